"""A bounded memory of recent salts, so a recorded connection cannot be played back.

Two generations of at most `capacity` salts each: when the current one is full it becomes the
previous one and the oldest generation is forgotten. A salt is refused while it is in either,
so at least the last `capacity` salts (and at most twice that) are remembered, in at most
about 2 x capacity x 100 bytes. The server's own salts go in too: a prober who sends the
relay's answer back to it would otherwise have a stream the relay can decrypt.
"""

from __future__ import annotations

CAPACITY = 10_000  # per generation: about 2 MB at most for both


class SaltFilter:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._current: set[bytes] = set()
        self._previous: set[bytes] = set()

    def __contains__(self, salt: object) -> bool:
        return salt in self._current or salt in self._previous

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def add(self, salt: bytes) -> None:
        self._current.add(salt)
        if len(self._current) >= self.capacity:
            self._previous, self._current = self._current, set()
