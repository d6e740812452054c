"""An HTTP body must keep moving: announcing a large body does not buy time to trickle it."""

from __future__ import annotations

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
