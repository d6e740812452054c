"""An HTTP body must keep moving: announcing a large body does not buy time to trickle it."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from relay.web import server
from tests.helpers import RelayServer


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_trickled_mxdeliv_body_is_cut_off(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch, framing: str
) -> None:
    monkeypatch.setattr(server, "BODY_GRACE", 1.0)
    length = relay_server.config.limits.max_message_size
    header = (
        f"Content-Length: {length}" if framing == "content-length" else "Transfer-Encoding: chunked"
    )
    head = f"POST /mxdeliv HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n".encode()
    piece = b"x" if framing == "content-length" else b"1\r\nx\r\n"
    received = bytearray()
    with trio.fail_after(15):
        stream = await trio.open_tcp_stream(relay_server.host, relay_server.port("http"))
        await stream.send_all(head)
        while True:
            with trio.move_on_after(0.2):
                try:
                    data = await stream.receive_some(4096)
                except trio.BrokenResourceError:
                    break
                if not data:
                    break
                received += data
                continue
            try:
                await stream.send_all(piece)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
    assert received.startswith(b"HTTP/1.1 408 ")


async def test_http_connections_per_ip_are_capped(relay_server) -> None:
    app = relay_server.app
    limits = dataclasses.replace(app.config.limits, max_connections_per_ip=3)
    app.config = dataclasses.replace(app.config, limits=limits)
    held = [
        await trio.open_tcp_stream(relay_server.host, relay_server.port("http")) for _ in range(3)
    ]
    extra = await trio.open_tcp_stream(relay_server.host, relay_server.port("http"))
    with trio.fail_after(5):
        reply = await extra.receive_some(4096)
    assert reply.startswith(b"HTTP/1.1 503 ") and b"too many connections" in reply
    await extra.aclose()
    await held[0].aclose()
    with trio.fail_after(5):
        while True:  # the freed slot is usable again
            again = await trio.open_tcp_stream(relay_server.host, relay_server.port("http"))
            await again.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if (await again.receive_some(4096)).startswith(b"HTTP/1.1 200 "):
                break
            await again.aclose()
            await trio.sleep(0.05)
    await again.aclose()
    for stream in held[1:]:
        await stream.aclose()
