"""The service registry: one service stops and starts while the relay runs and the others go
on; a connection handler that crashes is logged with its traceback (scrubbed in no-log mode)
and never takes its service down."""

from __future__ import annotations

import io
import socket

import trio

from relay.log import Logger
from relay.services import Service
from tests.helpers import RelayServer


def banner(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(5)
        return s.recv(100)


async def test_a_service_stops_and_starts_while_the_others_serve(
    relay_server: RelayServer,
) -> None:
    registry = relay_server.app.services
    assert registry is not None
    port = relay_server.port("imap")
    await registry.stop("imap")
    assert "imap" not in registry.ports
    refused = await trio.to_thread.run_sync(lambda: _refused(relay_server.host, port))
    assert refused
    smtp = await trio.to_thread.run_sync(banner, relay_server.host, relay_server.port("smtp"))
    assert smtp.startswith(b"220 ")
    assert await registry.start("imap", port) == port
    again = await trio.to_thread.run_sync(banner, relay_server.host, port)
    assert again.startswith(b"* OK")


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_a_crashing_handler_is_logged_with_its_traceback(relay_server: RelayServer) -> None:
    app = relay_server.app
    registry = app.services
    assert registry is not None
    out = io.StringIO()
    app.log = Logger(stream=out, no_log=True)

    async def broken(stream: trio.abc.Stream, peer: object, app: object, service: str) -> None:
        raise ValueError(f"bug while serving {peer}")

    registry.services["broken"] = Service("broken", "tcp", "none", broken)
    port = await registry.start("broken", 0)
    assert port
    for _ in range(2):  # the service survives the first crash
        await trio.to_thread.run_sync(_connect_and_wait_for_close, relay_server.host, port)
    lines = [line for line in out.getvalue().splitlines() if "connection-crashed" in line]
    assert len(lines) == 2
    assert "traceback=" in lines[0] and "ValueError" in lines[0] and "broken" in lines[0]
    assert "127.0.0.1" not in lines[0]  # the peer's address is scrubbed in no-log mode
    await registry.stop("broken")


def _connect_and_wait_for_close(host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(5)
        assert s.recv(10) == b""
