"""COMPRESS=DEFLATE while the client is silent: the stream lets go of its zlib states, and what
the client sends after the pause still reads right, back-references to what it sent before
included (the client is plain zlib with a 32 KiB window, which does not know of the release)."""

from __future__ import annotations

import secrets
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.imap import compress
from relay.imap.compress import RELEASE_AFTER, DeflateStream
from tests.helpers import deliver_to
from tests.imap.util import PASSWORD, RawClient, ZlibStream, message, new_addr


def filler(first: int, size: int) -> bytes:
    """Pipelined NOOPs, at least `size` bytes, their tags counting up from `first`."""
    out = bytearray()
    while len(out) < size:
        out += b"n%06d NOOP\r\n" % first
        first += 1
    return bytes(out)


def deflated(client: ZlibStream, data: bytes) -> bytes:
    return client.deflate.compress(data) + client.deflate.flush(zlib.Z_SYNC_FLUSH)


def deflated_size(client: ZlibStream, data: bytes) -> int:
    """How many bytes the client's next write of `data` will take on the wire."""
    deflate = client.deflate.copy()
    return len(deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH))


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


def traced_bytes() -> int:
    return tracemalloc.get_traced_memory()[0]


async def traced_bytes_after(seconds: float) -> int:
    await trio.sleep(seconds)
    return traced_bytes()


class Reader:
    """The server side, parked in receive_some like a session in IDLE; keeps what it read."""

    def __init__(self, stream: DeflateStream) -> None:
        self.stream = stream
        self.got = bytearray()

    async def run(self) -> None:
        while data := await self.stream.receive_some():
            self.got += data

    async def take(self, size: int) -> bytes:
        """The next `size` bytes read."""
        with trio.fail_after(5):
            while len(self.got) < size:
                await trio.sleep(0.01)
        taken = bytes(self.got[:size])
        del self.got[:size]
        return taken


async def test_silent_client_holds_no_zlib_state_and_later_references_still_read(
    autojump_clock, traced
):
    client_side, server_side = trio.testing.memory_stream_pair()
    client, server = ZlibStream(client_side), DeflateStream(server_side)
    reader = Reader(server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run)
        await trio.sleep(2 * RELEASE_AFTER)  # silent before its first command: no history yet
        await client.send_all(b"a1 NOOP\r\n")
        assert await reader.take(9) == b"a1 NOOP\r\n"
        await server.send_all(b"a1 OK NOOP completed.\r\n")
        assert await client.receive_some() == b"a1 OK NOOP completed.\r\n"
        busy = await traced_bytes_after(RELEASE_AFTER / 2)
        silent = await traced_bytes_after(RELEASE_AFTER)
        assert busy - silent > 44 * 1024  # inflate's window and state (40 KiB), deflate's (9 KiB)

        for turn in range(3):
            # More than a window in all; a unique line about 31 KiB back, then only NOOPs.
            token = b"t" + secrets.token_hex(200).encode() + b" NOOP\r\n"
            first = turn * 10_000
            sent = filler(first, 8 * 1024) + token + filler(first + 1000, 31 * 1024)
            await client_side.send_all(deflated(client, sent))
            assert await reader.take(len(sent)) == sent
            await server.send_all(b"n000000 OK NOOP completed.\r\n")
            assert await client.receive_some() == b"n000000 OK NOOP completed.\r\n"

            busy = await traced_bytes_after(RELEASE_AFTER / 2)
            silent = await traced_bytes_after(RELEASE_AFTER)
            assert busy - silent > 64 * 1024  # the zlib states and the 32 KiB history uncompressed

            await server.send_all(b"* 1 EXISTS\r\n")  # IDLE's push, while the client is silent
            assert await client.receive_some() == b"* 1 EXISTS\r\n"
            assert traced_bytes() - silent < 4 * 1024  # no deflate state kept for it

            wire = deflated(client, token)
            assert len(wire) < 40  # one back-reference of about 31 KiB, across the release
            await client_side.send_all(wire)
            assert await reader.take(len(token)) == token
            await server.send_all(token.replace(b"NOOP", b"OK NOOP completed."))
            assert await client.receive_some() == token.replace(b"NOOP", b"OK NOOP completed.")
        await client_side.aclose()


async def test_client_pausing_within_a_deflate_block_is_read_right(autojump_clock):
    client_side, server_side = trio.testing.memory_stream_pair()
    client, server = ZlibStream(client_side), DeflateStream(server_side)
    reader = Reader(server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run)
        first = filler(0, 4000)
        await client_side.send_all(deflated(client, first))
        assert await reader.take(len(first)) == first
        # A block cut in two by a stall longer than the release delay: the inflater must not
        # be rebuilt between its halves.
        command = filler(0, 2000) + filler(5000, 2000)
        wire = deflated(client, command)
        await client_side.send_all(wire[: len(wire) // 2])
        await trio.sleep(2 * RELEASE_AFTER)
        await client_side.send_all(wire[len(wire) // 2 :])
        assert await reader.take(len(command)) == command
        await client_side.aclose()


FLUSHES = (
    zlib.Z_NO_FLUSH,
    zlib.Z_BLOCK,
    zlib.Z_PARTIAL_FLUSH,
    zlib.Z_SYNC_FLUSH,
    zlib.Z_FULL_FLUSH,
)
CHUNKS = st.one_of(
    st.binary(max_size=3000),  # incompressible: stored blocks
    st.text("ab \r\n", max_size=3000).map(str.encode),  # long matches
    st.integers(0, 300).map(lambda n: filler(n, n * 13)),
)


async def read_with_a_release_at(wire: bytes, cut: int) -> bytes:
    client_side, server_side = trio.testing.memory_stream_pair()
    server = DeflateStream(server_side)
    got = bytearray()

    async def read_all() -> None:
        while data := await server.receive_some():
            got.extend(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await client_side.send_all(wire[:cut])
        await trio.testing.wait_all_tasks_blocked()
        server.expect_silence()
        await client_side.send_all(wire[cut:])
        await client_side.aclose()
    return bytes(got)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(CHUNKS, st.sampled_from(FLUSHES)), min_size=1, max_size=8),
    st.sampled_from((0, 1, 6, 9)),
    st.sampled_from((zlib.Z_DEFAULT_STRATEGY, zlib.Z_FIXED, zlib.Z_HUFFMAN_ONLY)),
    st.booleans(),
    st.floats(0, 1),
)
def test_a_release_anywhere_in_the_client_stream_reads_it_alike(
    chunks, level, strategy, after_a_write, where
):
    # Wherever the client's stream is cut (within a block, within a code, after a flush of
    # any kind), a release there is either refused or one the rebuilt inflater reads on from.
    deflate = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
    wire, ends = b"", []
    for data, flush in chunks:
        wire += deflate.compress(data) + deflate.flush(flush)
        ends.append(len(wire))
    wire += deflate.flush(zlib.Z_SYNC_FLUSH)
    cut = ends[int(where * (len(ends) - 1))] if after_a_write else int(where * len(wire))
    plain = b"".join(data for data, _ in chunks)
    assert trio.run(read_with_a_release_at, wire, cut) == plain


async def test_compressed_session_lets_go_in_idle_and_in_silence_and_reads_right_after(
    relay_server, monkeypatch, traced
):
    # The relay runs in this process: tracemalloc sees its zlib states come and go.
    monkeypatch.setattr(compress, "RELEASE_AFTER", 0.5)
    addr = new_addr(relay_server, "cz")
    c = await RawClient.connect(relay_server)
    await c.read_line()
    await c.command(f'a1 LOGIN "{addr}" "{PASSWORD}"\r\n'.encode())
    assert await c.command(b"a2 COMPRESS DEFLATE\r\n") == [b"a2 OK Begin compression.\r\n"]
    c.stream = client = ZlibStream(c.stream)
    await trio.sleep(0.8)  # silent right after COMPRESS: let go with no history yet
    assert (await c.command(b"a3 SELECT INBOX\r\n"))[-1].startswith(b"a3 OK ")

    # More than a window in all; a unique tag about 31 KiB back, then only NOOPs.
    tag = b"t" + secrets.token_hex(200).encode()
    noops = filler(0, 31 * 1024)
    await c.send(filler(5000, 8 * 1024) + tag + b" NOOP\r\n" + noops)
    last_tag = noops.split()[-2]
    while await c.read_line() != last_tag + b" OK NOOP completed.\r\n":
        pass

    busy = traced_bytes()
    await c.send(b"a4 IDLE\r\n")
    assert await c.read_line() == b"+ idling\r\n"
    idle = await traced_bytes_after(0.1)  # well within RELEASE_AFTER: IDLE itself lets go
    assert busy - idle > 48 * 1024
    await deliver_to(relay_server.app.store, [addr], message())
    assert await c.read_line() == b"* 1 EXISTS\r\n"
    await c.send(b"DONE\r\n")
    assert await c.read_line() == b"a4 OK Idle completed.\r\n"

    busy = traced_bytes()
    silent = await traced_bytes_after(0.8)  # silent outside IDLE for longer than RELEASE_AFTER
    assert busy - silent > 48 * 1024
    repeated = tag + b" NOOP\r\n"
    assert deflated_size(client, repeated) < 40  # a back-reference of about 31 KiB
    assert await c.command(repeated) == [tag + b" OK NOOP completed.\r\n"]
    await c.aclose()
