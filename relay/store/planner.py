"""The context in which the writer turns requests into log records.

An operation reads the index, decides, and emits records; each record is applied to the index at
once (inside a transaction that is rolled back afterwards) so the next operation of the same batch
sees its effect. After the batch is durable the same records are applied for real.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import index
from .rules import canonical_name, day_number, decode_flags
from .segments import Batch, Location
from .space import Space
from .types import Mailbox, MailboxChange, MessageMeta, NoSuchAccount, NoSuchMailbox


@dataclass
class Planner:
    conn: sqlite3.Connection
    batch: Batch
    now: float
    config: Any
    space: Space
    records: list[tuple[dict[str, Any], Location | None]] = field(default_factory=list)
    events: list[tuple[str, MailboxChange]] = field(default_factory=list)

    def emit(self, rec: dict[str, Any], body: bytes | None = None) -> Location | None:
        if body:  # new data: refused below the watermark (deletions carry no body)
            self.require_space(len(body))
        loc = self.batch.add(rec, body)
        index.apply(self.conn, rec, loc)
        self.records.append((rec, loc))
        return loc

    def require_space(self, nbytes: int) -> None:
        """StorageFull unless this batch plus `nbytes` leaves the watermark free."""
        watermark = self.config.accounts.min_free_disk_space
        self.space.require(watermark, len(self.batch.buf) + nbytes)

    def event(
        self,
        addr: str,
        mailbox: str,
        kind: str,
        uids: list[int] | tuple[int, ...],
        added: tuple[MessageMeta, ...] = (),
        header: bytes = b"",
    ) -> None:
        change = MailboxChange(mailbox, kind, tuple(uids), added, header)  # type: ignore[arg-type]
        self.events.append((addr, change))

    def mark(self) -> tuple[Any, ...]:
        return self.batch.mark(), len(self.records), len(self.events)

    def reset(self, mark: tuple[Any, ...]) -> None:
        self.batch.reset(mark[0])
        del self.records[mark[1] :]
        del self.events[mark[2] :]

    @contextmanager
    def part(self) -> Iterator[None]:
        """A part of one operation that may fail alone (one recipient of a delivery): if the
        block raises, its index changes, records and events are undone and the error goes on
        to the caller, who may carry on with the rest of the operation."""
        mark = self.mark()
        self.conn.execute("SAVEPOINT part")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO part")
            self.conn.execute("RELEASE part")
            self.reset(mark)
            raise
        self.conn.execute("RELEASE part")

    # -- lookups used by many operations -------------------------------------------------

    def today(self) -> int:
        return day_number(self.now)

    def require_account(self, addr: str) -> None:
        if not self.conn.execute("SELECT 1 FROM accounts WHERE addr=?", (addr,)).fetchone():
            raise NoSuchAccount(addr)

    def find_mailbox(self, addr: str, name: str) -> Mailbox | None:
        return find_mailbox(self.conn, addr, name)

    def mailbox(self, addr: str, name: str) -> Mailbox:
        mbx = self.find_mailbox(addr, name)
        if mbx is None:
            self.require_account(addr)
            raise NoSuchMailbox(f"no such mailbox: {name}")
        return mbx

    def next_mailbox_id(self) -> int:
        return max(
            index.get_meta(self.conn, "next_mailbox", 1),
            self.conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM mailboxes").fetchone()[0],
        )

    def next_uidvalidity(self) -> int:
        """Time-based like most servers, but strictly increasing so a recreated name differs."""
        return max(int(self.now), index.get_meta(self.conn, "uidvalidity") + 1)

    def account_usage(self, addr: str) -> int:
        row = self.conn.execute("SELECT SUM(bytes) FROM mailboxes WHERE addr=?", (addr,))
        return row.fetchone()[0] or 0


def find_mailbox(conn: sqlite3.Connection, addr: str, name: str) -> Mailbox | None:
    row = conn.execute(
        "SELECT id, addr, name, uidvalidity, uidnext, modseq, bytes, subscribed, special_use"
        " FROM mailboxes WHERE addr=? AND name=?",
        (addr, canonical_name(name)),
    ).fetchone()
    return Mailbox(*row) if row else None


def to_datetime(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def message_meta(row: tuple[Any, ...]) -> MessageMeta:
    """Row (uid, flags, size, date, modseq) -> MessageMeta."""
    uid, flags, size, date, modseq = row
    return MessageMeta(uid, decode_flags(flags), size, to_datetime(date), modseq)
