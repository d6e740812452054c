"""aioice's TURN client (an independent asyncio implementation) against the relay's TURN server:
allocate with the credentials from METADATA, relay a datagram to a UDP peer and back (aioice
binds a channel for it, so the data goes as ChannelData), refresh; a wrong secret and an expired
username are refused. aioice runs in its own asyncio loop in a worker thread."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import trio

from relay.turn.credentials import SECRET_FILE, mint
from tests.turn.util import read_turn_metadata, turn_config

aioice = pytest.importorskip(
    "aioice", reason="aioice (PyPI, the TURN client these tests use) is not installed"
)
from aioice import stun as aioice_stun  # noqa: E402
from aioice.turn import create_turn_endpoint  # noqa: E402

HOST = "127.0.0.1"


@pytest.fixture
def relay_config(tmp_path):
    return turn_config(tmp_path / "data")


class Received(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.queue.put_nowait((data, addr))


async def _session(server: tuple[str, int], username: str, password: str) -> dict:
    """Allocate, send to a UDP peer, get its answer, refresh, close; what happened."""
    transport, protocol = await create_turn_endpoint(
        Received, server_addr=server, username=username, password=password
    )
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((HOST, 0))
    peer.settimeout(5)
    try:
        relayed = transport.get_extra_info("sockname")
        transport.sendto(b"hello peer", peer.getsockname())
        data, source = await asyncio.to_thread(peer.recvfrom, 2048)
        peer.sendto(b"hello aioice", source)
        back, from_addr = await asyncio.wait_for(protocol.queue.get(), 5)
        inner = transport._TurnTransport__inner_protocol  # type: ignore[attr-defined]
        refresh = aioice_stun.Message(
            message_method=aioice_stun.Method.REFRESH, message_class=aioice_stun.Class.REQUEST
        )
        refresh.attributes["LIFETIME"] = 600
        response, _ = await inner.request_with_retry(refresh)
        return {
            "relayed": tuple(relayed),
            "peer_got": data,
            "peer_source": tuple(source),
            "back": back,
            "from": tuple(from_addr),
            "peer": peer.getsockname(),
            "refresh_lifetime": response.attributes["LIFETIME"],
        }
    finally:
        transport.close()
        await asyncio.sleep(0.2)
        peer.close()


async def _refused(server: tuple[str, int], username: str, password: str) -> str:
    try:
        transport, _ = await create_turn_endpoint(
            Received, server_addr=server, username=username, password=password
        )
    except Exception as e:  # aioice raises TransactionFailed with the error code
        return repr(e)
    transport.close()
    return "allocated"


async def test_aioice_allocates_relays_and_refreshes(relay_server):
    host, port, username, password = (await read_turn_metadata(relay_server)).decode().split(":")
    result = await trio.to_thread.run_sync(
        lambda: asyncio.run(_session((host, int(port)), username, password))
    )
    assert result["relayed"][0] == HOST
    assert result["peer_got"] == b"hello peer" and result["peer_source"] == result["relayed"]
    assert result["back"] == b"hello aioice" and result["from"] == result["peer"]
    assert result["refresh_lifetime"] == 600


async def test_aioice_wrong_secret_and_expired_username_get_401(relay_server):
    config = relay_server.config
    server = (HOST, config.turn.port)
    secret = (config.data_dir / SECRET_FILE).read_bytes().strip()
    for username, password in (mint(b"wrong", time.time()), mint(secret, time.time() - 6 * 86400)):
        outcome = await trio.to_thread.run_sync(
            lambda u=username, p=password: asyncio.run(_refused(server, u, p))
        )
        assert "401" in outcome, outcome
