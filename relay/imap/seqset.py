"""IMAP sequence sets ("1:4,7,9:*"), for message sequence numbers and UIDs alike."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .grammar import Cursor, ParseError

STAR = 0  # stands for "*": the largest number in use; 0 is never a valid message number


@dataclass(frozen=True, slots=True)
class SeqSet:
    ranges: tuple[tuple[int, int], ...]  # (low, high) as written; STAR for "*"
    # largest -> the ranges sorted and merged (lows, highs), for contains() and select()
    _merged: dict[int, tuple[list[int], list[int]]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def bounds(self, largest: int) -> Iterator[tuple[int, int]]:
        """Each range with * replaced and ends ordered (RFC 3501: 4:2 means 2:4)."""
        for a, b in self.ranges:
            a = largest if a == STAR else a
            b = largest if b == STAR else b
            yield (a, b) if a <= b else (b, a)

    def merged(self, largest: int) -> tuple[list[int], list[int]]:
        """The ranges as disjoint sorted intervals: (lows, highs). "1:*,1:*,..." is one."""
        cached = self._merged.get(largest)
        if cached is not None:
            return cached
        lows: list[int] = []
        highs: list[int] = []
        for lo, hi in sorted(self.bounds(largest)):
            if highs and lo <= highs[-1] + 1:
                highs[-1] = max(highs[-1], hi)
            else:
                lows.append(lo)
                highs.append(hi)
        if len(self._merged) >= 4:  # one entry per "largest" in use: seq and UID at most
            self._merged.clear()
        self._merged[largest] = (lows, highs)
        return lows, highs

    def contains(self, value: int, largest: int) -> bool:
        """O(log ranges): SEARCH asks this once per message."""
        lows, highs = self.merged(largest)
        i = bisect_right(lows, value) - 1
        return i >= 0 and value <= highs[i]

    def select(self, sorted_values: Sequence[int], largest: int) -> list[int]:
        """Indexes into sorted_values whose value is in the set, ascending and unique.

        Works by bisecting each merged range, so it costs O(ranges log ranges + n) however the
        ranges overlap, not O(n * ranges) ("1:*,1:*,..." over a big mailbox).
        """
        picked: list[int] = []
        for lo, hi in zip(*self.merged(largest), strict=True):
            picked.extend(range(bisect_left(sorted_values, lo), bisect_right(sorted_values, hi)))
        return picked

    def format(self) -> str:
        def one(n: int) -> str:
            return "*" if n == STAR else str(n)

        return ",".join(one(a) if a == b else f"{one(a)}:{one(b)}" for a, b in self.ranges)


def parse_seqset(cur: Cursor) -> SeqSet:
    ranges: list[tuple[int, int]] = []
    while True:
        low = _seq_number(cur)
        high = _seq_number(cur) if cur.accept(b":") else low
        ranges.append((low, high))
        if not cur.accept(b","):
            return SeqSet(tuple(ranges))


def _seq_number(cur: Cursor) -> int:
    if cur.accept(b"*"):
        return STAR
    try:
        return cur.nz_number()
    except ParseError:
        raise ParseError("Invalid sequence set") from None


def from_values(values: Sequence[int]) -> SeqSet:
    """Compact ascending values into ranges (used for COPYUID and UID responses)."""
    ranges: list[tuple[int, int]] = []
    for v in values:
        if ranges and ranges[-1][1] + 1 == v:
            ranges[-1] = (ranges[-1][0], v)
        else:
            ranges.append((v, v))
    return SeqSet(tuple(ranges))
