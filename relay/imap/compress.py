"""COMPRESS=DEFLATE (RFC 4978): a trio stream wrapper that deflates both directions.

Most sessions sit in IDLE, so a silent client must cost little: when IDLE begins, or after
RELEASE_AFTER seconds without a byte from the client, the stream lets go of both zlib states
and makes them again when the client speaks. Every write of ours ends with a sync flush, after
which a new raw deflate stream continues the old one validly (it only has no history to refer
to). The client's deflate may refer back 32 KiB, so the inflater is rebuilt from the last
32 KiB it produced, kept deflated while the client is silent (IMAP commands are repetitive: a
full window of them takes about 1.5 KiB).
"""

from __future__ import annotations

import zlib

import trio

# Our own deflate state is kept minimal (512-byte window, memLevel 1: about 9 KiB instead of
# zlib's default 256 KiB): thousands of connections each hold one while busy, and the payload
# is largely base64-armored ciphertext, whose gain comes from entropy coding, not from long
# matches. Inflate must accept the client's full 32 KiB window, which is most of the cost.
_WBITS_OUT = -9
_MEM_LEVEL = 1
_WBITS_IN = -zlib.MAX_WBITS
_WINDOW_IN = 1 << zlib.MAX_WBITS
_CHUNK = 16 * 1024
RELEASE_AFTER = 1.0  # seconds of silence from the client before the zlib states are let go

# An empty final block (fixed Huffman): what an inflater accepts, without output, to end the
# stream exactly when it stands between two blocks with no bits of the next one pending.
_EMPTY_FINAL_BLOCK = b"\x03\x00"


class DeflateStream(trio.abc.Stream):
    def __init__(self, inner: trio.abc.Stream, already_received: bytes = b"") -> None:
        self.inner = inner
        self._deflate: zlib._Compress | None = None  # made on the first write
        self._inflater = _Inflater()
        self._pending = already_received  # compressed bytes read before the switch
        self._client_silent = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        deflate = self._deflate or _small_deflate()
        out = deflate.compress(bytes(data)) + deflate.flush(zlib.Z_SYNC_FLUSH)
        # What goes out while the client is silent (IDLE's pushes and keep-alives) is not
        # worth keeping a deflate state for.
        self._deflate = None if self._client_silent else deflate
        await self.inner.send_all(out)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        limit = max_bytes or _CHUNK
        while True:
            if self._inflater.unconsumed_tail:
                return self._inflater.decompress(self._inflater.unconsumed_tail, limit)
            compressed = self._pending or await self._receive_compressed()
            self._pending = b""
            if not compressed:
                return b""
            data = self._inflater.decompress(compressed, limit)
            if data:
                return data
            # A deflate block can end without producing output yet; read more.

    def expect_silence(self) -> None:
        """The client is expected to say nothing for a while (IDLE): let go of the zlib states
        now rather than after RELEASE_AFTER; they are made again when it speaks."""
        self._deflate = None
        self._inflater.release()
        self._client_silent = True

    async def _receive_compressed(self) -> bytes | bytearray:
        if not self._client_silent:
            # Cancelling a receive loses nothing: trio's SSLStream keeps what it decrypted, and
            # the TLS context refuses renegotiation, the one case where it would break.
            with trio.move_on_after(RELEASE_AFTER):
                return await self.inner.receive_some(_CHUNK)
            self.expect_silence()  # silent that long: most likely for much longer
        compressed = await self.inner.receive_some(_CHUNK)
        self._client_silent = False
        return compressed

    async def aclose(self) -> None:
        await self.inner.aclose()


def _small_deflate() -> zlib._Compress:
    return zlib.compressobj(6, zlib.DEFLATED, _WBITS_OUT, _MEM_LEVEL)


class _Inflater:
    """The client's direction: a raw inflater that can be let go between two deflate blocks
    and rebuilt from the last 32 KiB it produced, the farthest the client may refer back."""

    def __init__(self) -> None:
        self._zlib: zlib._Decompress | None = zlib.decompressobj(_WBITS_IN)
        self._recent = bytearray()  # the last _WINDOW_IN bytes inflated
        self._saved = b""  # _recent deflated, while _zlib is let go

    @property
    def unconsumed_tail(self) -> bytes:
        return b"" if self._zlib is None else self._zlib.unconsumed_tail

    def decompress(self, data: bytes | bytearray, limit: int) -> bytes:
        if self._zlib is None:
            self._recent = bytearray(zlib.decompress(self._saved, _WBITS_OUT))
            self._zlib = zlib.decompressobj(_WBITS_IN, zdict=bytes(self._recent))
            self._saved = b""
        out = self._zlib.decompress(data, limit)
        self._recent += out
        del self._recent[:-_WINDOW_IN]
        return out

    def release(self) -> None:
        """Let go of the zlib state if it stands between two blocks (a client's flush ends a
        block; a client that paused within one keeps its inflater until it pauses after one)."""
        if self._zlib is None or self._zlib.unconsumed_tail or not _between_blocks(self._zlib):
            return
        # Not zlib.compress(): its 300 KiB state, if only for a moment in each of thousands of
        # sessions going idle at once (clients reconnecting), grows the heap for good.
        deflate = _small_deflate()
        self._saved = deflate.compress(self._recent) + deflate.flush()
        self._recent = bytearray()
        self._zlib = None


def _between_blocks(inflate: zlib._Decompress) -> bool:
    """True if the inflater has ended a block and holds no bits of the next: then a new one
    given the same history reads what follows alike. Python's zlib does not tell, so a copy is
    asked to end the stream: mid-block, those bits would be output, an error, or too few."""
    probe = inflate.copy()
    try:
        out = probe.decompress(_EMPTY_FINAL_BLOCK)
    except zlib.error:
        return False
    return probe.eof and not out and not probe.unused_data
