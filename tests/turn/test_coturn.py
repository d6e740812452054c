"""coturn's `turnutils_uclient` (Debian coturn), an independent TURN client, allocates through the
relay's built-in TURN server with the credentials METADATA hands out and relays datagrams to
coturn's `turnutils_peer` (a UDP echo peer) and back: by ChannelData, and by Send/Data
indications. A wrong password and an expired username are refused."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest
import trio

from relay.turn.credentials import SECRET_FILE, mint
from tests.turn.util import free_udp_port, read_turn_metadata, turn_config

UCLIENT = shutil.which("turnutils_uclient")
PEER = shutil.which("turnutils_peer")
pytestmark = pytest.mark.skipif(
    not (UCLIENT and PEER),
    reason="coturn's turnutils_uclient/turnutils_peer missing (Debian package coturn, "
    "tests/system-packages.txt)",
)
HOST = "127.0.0.1"


@pytest.fixture
def relay_config(tmp_path):
    return turn_config(tmp_path / "data")


async def _uclient(*args: str) -> tuple[int, str]:
    assert UCLIENT is not None
    with trio.fail_after(60):
        done = await trio.run_process(
            [UCLIENT, *args], capture_stdout=True, stderr=subprocess.STDOUT, check=False
        )
    return done.returncode, done.stdout.decode(errors="replace")


async def _with_peer(body):
    port = free_udp_port()
    assert PEER is not None
    async with trio.open_nursery() as nursery:
        process = await nursery.start(
            lambda task_status: trio.run_process(
                [PEER, "-p", str(port), "-L", HOST],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                task_status=task_status,
            )
        )
        await trio.sleep(0.3)
        try:
            return await body(port)
        finally:
            process.terminate()


@pytest.mark.parametrize("mode", [["-c"], ["-c", "-s"]], ids=["channel-data", "send-indication"])
async def test_uclient_relays_through_our_server(relay_server, mode):
    host, port, username, password = (await read_turn_metadata(relay_server)).decode().split(":")

    async def run(peer_port: int):
        return await _uclient(
            *mode, "-u", username, "-w", password, "-p", port,
            "-e", HOST, "-r", str(peer_port), "-n", "20", "-l", "1200", "-m", "2", host,
        )  # fmt: skip

    rc, out = await _with_peer(run)
    assert rc == 0, out[-2000:]
    assert re.search(r"tot_send_msgs=40, tot_recv_msgs=40", out), out[-2000:]
    assert "Total lost packets 0 " in out, out[-2000:]
    assert relay_server.app.services.ports["turn"] == int(port)


async def test_uclient_with_the_shared_secret_itself(relay_server):
    """coturn's own REST client (-W: "expiry:name" usernames) works with the same secret."""
    secret = (relay_server.config.data_dir / SECRET_FILE).read_text().strip()
    port = str(relay_server.config.turn.port)

    async def run(peer_port: int):
        return await _uclient(
            "-c", "-W", secret, "-p", port, "-e", HOST, "-r", str(peer_port), "-n", "5", HOST
        )

    rc, out = await _with_peer(run)
    assert rc == 0 and "tot_recv_msgs=5" in out, out[-2000:]


async def test_uclient_wrong_password_and_expired_username_refused(relay_server):
    secret = (relay_server.config.data_dir / SECRET_FILE).read_bytes().strip()
    port = str(relay_server.config.turn.port)
    expired = mint(secret, time.time() - 6 * 86400)
    wrong = (mint(secret, time.time())[0], "d3Jvbmc=")
    for username, password in (wrong, expired):

        async def run(peer_port: int, username=username, password=password):
            return await _uclient(
                "-c", "-u", username, "-w", password, "-p", port,
                "-e", HOST, "-r", str(peer_port), "-n", "3", HOST,
            )  # fmt: skip

        rc, out = await _with_peer(run)
        assert rc != 0 and "tot_recv_msgs=3" not in out, out[-2000:]
    refused = relay_server.app.services  # the server answered 401, not silence
    assert refused is not None
    from relay.turn.service import RUNNING

    assert RUNNING[relay_server.config.data_dir].engine.stats.refused.get(401, 0) >= 2
