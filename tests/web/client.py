"""A small async HTTP/1.1 client on h11 for tests: keep-alive, TLS, raw bytes when needed."""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any

import h11
import trio

TIMEOUT = 10.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names, last value wins
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class HTTPClient:
    """One connection; send several requests on it to exercise keep-alive."""

    def __init__(self, stream: trio.abc.Stream, host: str):
        self.stream = stream
        self.host = host
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(
        cls, host: str, port: int, *, tls: ssl.SSLContext | None = None, sni: str | None = None
    ) -> HTTPClient:
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        if tls is not None:
            stream = trio.SSLStream(stream, tls, server_hostname=sni or host)
            await stream.do_handshake()
        return cls(stream, sni or host)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> Reply:
        with trio.fail_after(TIMEOUT):
            if self.conn.our_state is h11.DONE:
                self.conn.start_next_cycle()
            all_headers = [("Host", self.host), ("Content-Length", str(len(body)))]
            all_headers += headers or []
            await self._send(h11.Request(method=method, target=path, headers=all_headers))
            if body:
                await self._send(h11.Data(data=body))
            await self._send(h11.EndOfMessage())
            response = await self._next()
            assert isinstance(response, h11.Response), response
            chunks = []
            while True:
                event = await self._next()
                if isinstance(event, h11.EndOfMessage):
                    break
                chunks.append(event.data)
            names = {k.decode().lower(): v.decode() for k, v in response.headers}
            return Reply(response.status_code, names, b"".join(chunks))

    async def _send(self, event: h11.Event) -> None:
        await self.stream.send_all(self.conn.send(event))

    async def _next(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            return event

    async def aclose(self) -> None:
        await self.stream.aclose()


async def fetch(
    host: str, port: int, method: str, path: str, body: bytes = b"", **kw: Any
) -> Reply:
    """One request on a fresh connection."""
    client = await HTTPClient.connect(host, port, tls=kw.pop("tls", None), sni=kw.pop("sni", None))
    try:
        return await client.request(method, path, body, **kw)
    finally:
        await client.aclose()


async def raw_exchange(host: str, port: int, data: bytes, *, timeout: float = TIMEOUT) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    stream = await trio.open_tcp_stream(host, port)
    received = b""
    with trio.fail_after(timeout):
        try:
            await stream.send_all(data)
            while chunk := await stream.receive_some(65536):
                received += chunk
        except trio.BrokenResourceError:
            pass  # a reset after the answer counts as closed
    await stream.aclose()
    return received
