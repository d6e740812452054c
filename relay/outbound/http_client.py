"""The sending side of `/mxdeliv`: one HTTPS POST carries a message to all its recipients there.

h11 does the HTTP/1.1 framing; this module only moves its bytes over a trio TLS stream.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import h11
import trio

from relay.outbound.connect import TransportError, open_connection, start_tls

REQUEST_TIMEOUT = 60.0  # as the official relay's transport
MAX_REPLY_BODY = 16 * 1024  # an SMTP reply line; anything longer is not a chatmail peer
CHUNK = 64 * 1024


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def request_headers(
    host: str, sender: str, recipients: list[str], length: int
) -> list[tuple[str, str]]:
    headers = [
        ("Host", host),
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(length)),
        ("Connection", "close"),
    ]
    if sender:
        headers.append(("X-Mail-From", sender))
    headers += [("X-Mail-To", rcpt) for rcpt in recipients]
    return headers


async def post_mxdeliv(
    addresses: tuple[str, ...],
    port: int,
    host: str,
    ctx: ssl.SSLContext,
    sender: str,
    recipients: list[str],
    body: bytes,
) -> HttpReply:
    """POST `body` (SMTP transmission form); raises TransportError if no answer came."""
    with trio.move_on_after(REQUEST_TIMEOUT):
        stream = await start_tls(await open_connection(addresses, port), ctx, host)
        try:
            return await _exchange(stream, host_header(host, port), sender, recipients, body)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as e:
            raise TransportError(f"HTTPS to {host}: {e or type(e).__name__}") from None
        finally:
            await trio.aclose_forcefully(stream)
    raise TransportError(f"HTTPS to {host}: no answer within {REQUEST_TIMEOUT:.0f} s")


def host_header(host: str, port: int) -> str:
    """The Host header for host:port (an IPv6 literal bracketed, port 443 left out)."""
    name = f"[{host}]" if ":" in host else host
    return name if port == 443 else f"{name}:{port}"


async def _exchange(
    stream: trio.SSLStream, host: str, sender: str, recipients: list[str], body: bytes
) -> HttpReply:
    conn = h11.Connection(our_role=h11.CLIENT)
    head = h11.Request(
        method="POST",
        target="/mxdeliv",
        headers=request_headers(host, sender, recipients, len(body)),
    )
    await stream.send_all(
        conn.send(head) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    )
    status = 0
    reply = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(CHUNK)))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            reply += event.data[: MAX_REPLY_BODY - len(reply)]
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            if not status:
                raise TransportError(f"HTTPS to {host}: connection closed without a response")
            return HttpReply(status=status, body=bytes(reply))
