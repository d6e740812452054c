"""The WebSocket send queue on its own: bounded in frames and bytes, never waiting forever."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from relay.webimap.outbox import Outbox, SlowReader


async def test_a_full_queue_waits_then_gives_up() -> None:
    outbox = Outbox(max_frames=2, max_bytes=1000)
    await outbox.put(b"a", timeout=1)
    await outbox.put(b"b", timeout=1)
    with pytest.raises(SlowReader):
        await outbox.put(b"c", timeout=0.05)
    assert len(outbox) == 2  # nothing was added beyond the bound


async def test_room_made_by_the_writer_lets_a_waiting_frame_in() -> None:
    outbox = Outbox(max_frames=1, max_bytes=1000)
    await outbox.put(b"first", timeout=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.put, b"second", 30)
        await trio.testing.wait_all_tasks_blocked()
        assert await outbox.get() == b"first"
    assert await outbox.get() == b"second"


async def test_bytes_bound_but_one_large_frame_goes_alone() -> None:
    outbox = Outbox(max_frames=100, max_bytes=10)
    big = b"x" * 50
    await outbox.put(big, timeout=1)  # larger than the bound, but the queue was empty
    with pytest.raises(SlowReader):
        await outbox.put(b"y", timeout=0.01)
    assert await outbox.get() == big
    await outbox.put(b"y", timeout=0.01)
