"""What one WebSocket has yet to write: bounded in frames and in bytes.

A putter waits for room at most `timeout` seconds; a client that reads nothing for that long
is a slow reader and is disconnected (SlowReader), so the relay never buffers for it without
bound. One frame larger than the byte bound (a big message fetched) is let in alone.
"""

from __future__ import annotations

from collections import deque

import trio


class SlowReader(Exception):
    """The client did not take what was sent to it in time."""


class Outbox:
    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._lot = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._frames)

    def _fits(self, size: int) -> bool:
        if not self._frames:
            return True
        return len(self._frames) < self.max_frames and self._bytes + size <= self.max_bytes

    async def put(self, frame: bytes, timeout: float) -> None:
        if not self._fits(len(frame)):
            with trio.move_on_after(timeout):
                while not self._fits(len(frame)):
                    await self._lot.park()
            if not self._fits(len(frame)):
                raise SlowReader(f"{len(self._frames)} frames, {self._bytes} bytes unread")
        self._frames.append(frame)
        self._bytes += len(frame)
        self._lot.unpark_all()

    async def get(self) -> bytes:
        while not self._frames:
            await self._lot.park()
        frame = self._frames.popleft()
        self._bytes -= len(frame)
        self._lot.unpark_all()
        return frame

    async def drained(self) -> None:
        while self._frames:
            await self._lot.park()
