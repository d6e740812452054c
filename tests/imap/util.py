"""Helpers for IMAP session tests: blocking clients in threads, a raw async byte client, and
COMPRESS=DEFLATE's client side in plain zlib."""

from __future__ import annotations

import re
import secrets
import ssl
import zlib
from collections.abc import Callable
from typing import TypeVar

import trio
from imapclient import IMAPClient

from tests.helpers import RelayServer

T = TypeVar("T")
PASSWORD = "correct-horse-1"


def new_addr(relay: RelayServer, prefix: str = "u") -> str:
    """A fresh valid chatmail address (9-character local part)."""
    return f"{prefix}{secrets.token_hex(8)}"[:9] + "@" + relay.domain


async def in_thread(fn: Callable[..., T], *args: object, timeout: float = 30) -> T:
    with trio.fail_after(timeout):
        return await trio.to_thread.run_sync(fn, *args)


def imapclient(relay: RelayServer, addr: str | None = None, password: str = PASSWORD) -> IMAPClient:
    client = IMAPClient(
        relay.host,
        relay.port("imaps"),
        ssl=True,
        ssl_context=relay.ssl_client_context(),
        timeout=15,
    )
    if addr is not None:
        client.login(addr, password)
    return client


def message(
    subject: str = "hello", body: str = "body text", *, sender: str = "a@example.org"
) -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: bob@example.org\r\nSubject: {subject}\r\n"
        f"Date: Mon, 05 Feb 2024 10:00:00 +0000\r\nMessage-ID: <{secrets.token_hex(6)}@x>\r\n"
        f"Chat-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


class RawClient:
    """Speaks IMAP byte for byte over TLS, so tests can assert exact responses."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def connect(cls, relay: RelayServer, *, service: str = "imaps") -> RawClient:
        with trio.fail_after(10):
            if service == "imaps":
                stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(
                    relay.host, relay.port("imaps"), ssl_context=relay.ssl_client_context()
                )
            else:
                stream = await trio.open_tcp_stream(relay.host, relay.port(service))
        return cls(stream)

    async def starttls(self, context: ssl.SSLContext) -> None:
        tls = trio.SSLStream(self.stream, context, server_hostname=None)
        with trio.fail_after(10):
            await tls.do_handshake()
        self.stream = tls

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_line(self, timeout: float = 10) -> bytes:
        """One response line; a literal announced at its end is read into the same item."""
        with trio.fail_after(timeout):
            while True:
                end = self._complete_line_end()
                if end is not None:
                    line = bytes(self.buffer[:end])
                    del self.buffer[:end]
                    return line
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self.buffer += data

    def _complete_line_end(self) -> int | None:
        pos = 0
        while True:
            nl = self.buffer.find(b"\n", pos)
            if nl < 0:
                return None
            literal = re.search(rb"\{(\d+)\}\r\n\Z", self.buffer[pos : nl + 1])
            if literal is None:
                return nl + 1
            pos = nl + 1 + int(literal[1])
            if pos > len(self.buffer):
                return None

    async def command(self, line: bytes, timeout: float = 10) -> list[bytes]:
        """Send a tagged command; return every response line up to and including the tagged one."""
        tag = line.split(b" ", 1)[0]
        await self.send(line)
        lines = []
        while True:
            response = await self.read_line(timeout)
            lines.append(response)
            if response.startswith(tag + b" "):
                return lines

    async def aclose(self) -> None:
        await self.stream.aclose()


class ZlibStream(trio.abc.Stream):
    """Client side of COMPRESS=DEFLATE: raw deflate, full window, sync flush per write; plain
    zlib with the client's usual settings, independent of the relay's own wrapper."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)

    async def send_all(self, data) -> None:
        await self.inner.send_all(
            self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        )

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes=None) -> bytes:
        while True:
            raw = await self.inner.receive_some(65536)
            if not raw:
                return b""
            out = self.inflate.decompress(raw)
            if out:
                return out

    async def aclose(self) -> None:
        await self.inner.aclose()
