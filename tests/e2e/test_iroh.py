"""Realtime webxdc data between two real Delta Chat cores through the built-in iroh relay.

The relay runs its plain-HTTP iroh listener (LAN mode: the certificate is self-signed, which
iroh refuses) and serves it as METADATA irohrelay; the cores advertise realtime on a shared
webxdc and send data until the other side gets a WebxdcRealtimeData event. The relay's admin
status then must show frames relayed. `test_realtime_through_relay_without_udp` runs the same
inside a private network namespace where nftables drops all UDP, so the relay path is the
only one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from relay.config import Iroh
from tests.e2e.dclient import LiveRelay, Profile
from tests.helpers import free_ports

IROH_PORT = free_ports(1)[0]
IN_NETNS = "RELAY_TEST_IROH_NETNS"


def _webxdc(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("index.html", "<html><body>realtime</body></html>")
        z.writestr("manifest.toml", 'name = "realtime test"\n')
    return path


def _admin_status(relay: LiveRelay) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(relay.config.data_dir / "admin.sock"))
        s.sendall(b'{"id": 1, "method": "status", "params": {}}\n')
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    return json.loads(data)["result"]


@pytest.mark.relay_config(iroh=Iroh(port=IROH_PORT))
def test_realtime_webxdc_data_through_the_relay(
    pair: tuple[Profile, Profile], relay: LiveRelay, tmp_path: Path
) -> None:
    alice, bob = pair
    for p in (alice, bob):
        p.call(p.account.set_config, "webxdc_realtime_enabled", "1")
    app = _webxdc(tmp_path / "app.xdc")
    sent = alice.call(alice.chat_with(bob).send_message, "play", None, None, str(app))
    received = bob.wait_incoming(lambda snapshot: snapshot.text == "play")
    got = bob.account.get_message_by_id(received.id)

    started = time.monotonic()
    alice.call(sent.send_webxdc_realtime_advertisement)
    bob.call(got.send_webxdc_realtime_advertisement)
    deadline = started + 60
    event = None
    while event is None and time.monotonic() < deadline:
        alice.call(sent.send_webxdc_realtime_data, list(b"hello over iroh"))
        try:
            event = bob.wait_for("WebxdcRealtimeData", timeout=1)
        except TimeoutError:
            continue
    assert event is not None, "no WebxdcRealtimeData within 60 s"
    assert bytes(event.data) == b"hello over iroh"
    print(f"realtime data arrived after {time.monotonic() - started:.1f} s")
    iroh = _admin_status(relay)["iroh"]
    print(f"relay: {iroh}")
    assert iroh["connections"] >= 2
    if os.environ.get(IN_NETNS):  # no UDP: everything went through the relay
        assert iroh["frames_relayed"] > 0


def test_realtime_through_relay_without_udp() -> None:
    """The test above, inside `unshare -n` with every UDP packet dropped."""
    if os.environ.get(IN_NETNS):
        pytest.skip("already inside the namespace")
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nft"):
        pytest.skip("needs root, unshare and nft")
    setup = (
        "ip link set lo up && nft add table inet t && "
        "nft add chain inet t out '{ type filter hook output priority 0; }' && "
        "nft add rule inet t out meta l4proto udp counter drop && "
        "nft add chain inet t in '{ type filter hook input priority 0; }' && "
        "nft add rule inet t in meta l4proto udp counter drop && "
        f"{sys.executable} -m pytest -q -p no:cacheprovider -s "
        f"{__file__}::test_realtime_webxdc_data_through_the_relay; rc=$?; "
        "nft list table inet t; exit $rc"
    )
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", setup],
        env={**os.environ, IN_NETNS: "1"},
        capture_output=True,
        text=True,
        timeout=220,
        cwd=Path(__file__).resolve().parents[2],
    )
    print(result.stdout[-4000:], result.stderr[-2000:])
    assert result.returncode == 0
    assert "frames_relayed" in result.stdout
    dropped = re.search(r"udp counter packets (\d+)", result.stdout)
    assert dropped and int(dropped.group(1)) > 0, "the cores sent no UDP: nothing was blocked"
