"""IMAP sequence sets ("1:4,7,9:*"), for message sequence numbers and UIDs alike."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .grammar import Cursor, ParseError

STAR = 0  # stands for "*": the largest number in use; 0 is never a valid message number


@dataclass(frozen=True, slots=True)
class SeqSet:
    ranges: tuple[tuple[int, int], ...]  # (low, high) as written; STAR for "*"

    def bounds(self, largest: int) -> Iterator[tuple[int, int]]:
        """Each range with * replaced and ends ordered (RFC 3501: 4:2 means 2:4)."""
        for a, b in self.ranges:
            a = largest if a == STAR else a
            b = largest if b == STAR else b
            yield (a, b) if a <= b else (b, a)

    def contains(self, value: int, largest: int) -> bool:
        return any(lo <= value <= hi for lo, hi in self.bounds(largest))

    def select(self, sorted_values: Sequence[int], largest: int) -> list[int]:
        """Indexes into sorted_values whose value is in the set, ascending and unique.

        Works by bisecting each range, so "1:*" over a big mailbox costs O(n), not O(n * ranges).
        """
        picked: set[int] = set()
        for lo, hi in self.bounds(largest):
            start = bisect_left(sorted_values, lo)
            stop = bisect_right(sorted_values, hi)
            picked.update(range(start, stop))
        return sorted(picked)

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
