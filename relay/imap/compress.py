"""COMPRESS=DEFLATE (RFC 4978): a trio stream wrapper that deflates both directions."""

from __future__ import annotations

import zlib

import trio

# Our own deflate state is kept minimal (512-byte window, memLevel 1: about 3 KiB instead of
# zlib's default 256 KiB): thousands of mostly idle connections each hold one, and the payload
# is largely base64-armored ciphertext, whose gain comes from entropy coding, not from long
# matches. Inflate must accept the client's full 32 KiB window, which is most of the cost.
_WBITS_OUT = -9
_MEM_LEVEL = 1
_CHUNK = 16 * 1024


class DeflateStream(trio.abc.Stream):
    def __init__(self, inner: trio.abc.Stream, already_received: bytes = b"") -> None:
        self.inner = inner
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, _WBITS_OUT, _MEM_LEVEL)
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self._pending = already_received  # compressed bytes read before the switch

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        out = self._deflate.compress(bytes(data)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        await self.inner.send_all(out)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        limit = max_bytes or _CHUNK
        while True:
            if self._inflate.unconsumed_tail:
                return self._inflate.decompress(self._inflate.unconsumed_tail, limit)
            compressed: bytes | bytearray
            if self._pending:
                compressed, self._pending = self._pending, b""
            else:
                compressed = await self.inner.receive_some(_CHUNK)
                if not compressed:
                    return b""
            data = self._inflate.decompress(compressed, limit)
            if data:
                return data
            # A deflate block can end without producing output yet; read more.

    async def aclose(self) -> None:
        await self.inner.aclose()
