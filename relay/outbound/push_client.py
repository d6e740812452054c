"""The HTTP side of push notifications: POST a device token to the notification proxy.

As the official relay sends it: `POST <url>` with the raw token as the body and no
Content-Type, HTTP/1.1 over TLS, a 60 s timeout. Connections are kept alive and reused (a few
idle ones at most), so a notification costs one round trip, not a TCP and TLS handshake. h11
does the framing; this module only moves its bytes over trio TLS streams.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import h11
import trio

from relay.outbound.connect import TransportError, client_context, start_tls

REQUEST_TIMEOUT = 60.0
MAX_IDLE = 4
MAX_BODY = 4096  # the proxy answers a word or two; more is read and dropped
CHUNK = 16 * 1024
_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError,
           TransportError, ssl.SSLError)  # fmt: skip


class _Connection:
    def __init__(self, stream: trio.SSLStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(our_role=h11.CLIENT)

    async def post(self, host: str, path: str, body: bytes) -> int:
        conn = self.h11
        head = h11.Request(
            method="POST",
            target=path,
            headers=[("Host", host), ("Content-Length", str(len(body)))],
        )
        data = conn.send(head) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        status = 0
        read = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                chunk = await self.stream.receive_some(CHUNK)
                read += len(chunk)
                if read > MAX_BODY + CHUNK:
                    raise TransportError("answer too long")
                conn.receive_data(bytes(chunk))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                return status
            elif isinstance(event, h11.ConnectionClosed):
                raise TransportError("connection closed without an answer")

    @property
    def reusable(self) -> bool:
        conn = self.h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        return False


class PushClient:
    def __init__(self, url: str, ca_file: str = "") -> None:
        parts = urlsplit(url)
        self.hostname = parts.hostname or ""
        self.port = parts.port or 443
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        name = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        self.host = name if self.port == 443 else f"{name}:{self.port}"
        self.context = client_context(True, ca_file)
        self._idle: list[_Connection] = []

    async def post(self, token: str) -> int | None:
        """The proxy's status code, or None if no answer came (a retry then)."""
        body = token.encode()
        conn: _Connection | None = None
        with trio.move_on_after(REQUEST_TIMEOUT):
            try:
                if self._idle:  # kept alive; the proxy may have closed it meanwhile
                    conn = self._idle.pop()
                    try:
                        status = await conn.post(self.host, self.path, body)
                    except _ERRORS:
                        await trio.aclose_forcefully(conn.stream)
                        conn = None
                    else:
                        return await self._finish(conn, status)
                conn = await self._connect()
                status = await conn.post(self.host, self.path, body)
            except _ERRORS:
                if conn is not None:
                    await trio.aclose_forcefully(conn.stream)
                return None
            return await self._finish(conn, status)
        if conn is not None:  # timed out halfway: the connection's state is unknown
            await trio.aclose_forcefully(conn.stream)
        return None

    async def _connect(self) -> _Connection:
        tcp = await trio.open_tcp_stream(self.hostname, self.port)
        try:
            return _Connection(await start_tls(tcp, self.context, self.hostname))
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise

    async def _finish(self, conn: _Connection, status: int) -> int:
        if conn.reusable and len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:
            await trio.aclose_forcefully(conn.stream)
        return status

    async def aclose(self) -> None:
        for conn in self._idle:
            await trio.aclose_forcefully(conn.stream)
        self._idle.clear()
