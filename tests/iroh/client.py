"""A minimal iroh 0.35 relay client on our own codec: what a Delta Chat core sends on the wire."""

from __future__ import annotations

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from relay.iroh import frames


class RelayClient:
    def __init__(self, stream: trio.abc.Stream, key: Ed25519PrivateKey) -> None:
        self.stream = stream
        self.key = key
        self.public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.decoder = frames.Decoder()

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        key: Ed25519PrivateKey | None = None,
        *,
        path: str = "/relay",
        handshake: bool = True,
        stream: trio.abc.Stream | None = None,
    ) -> RelayClient:
        stream = stream or await trio.open_tcp_stream(host, port)
        client = cls(stream, key or Ed25519PrivateKey.generate())
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: iroh derp http\r\n"
            "Connection: Upgrade\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            data = await stream.receive_some(4096)
            assert data, head
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        client.head = head.decode()
        client.decoder.feed(rest)
        if handshake:
            await client.send_raw(frames.client_info(client.key))
        return client

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_to(self, dst: bytes, data: bytes) -> None:
        await self.send_raw(frames.send_packet(dst, data))

    async def frame(self, *, skip_pings: bool = True) -> frames.Frame | None:
        """The next frame, None at end of stream."""
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                if skip_pings and frame.type == frames.PING:
                    continue
                return frame
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                return None
            self.decoder.feed(data)

    async def aclose(self) -> None:
        await self.stream.aclose()
