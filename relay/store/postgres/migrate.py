"""`relay db migrate --from-embedded DATA_DIR`: copy an embedded store (its accounts, blocked
addresses, mailboxes, messages with flags, dates and pending push keys, metadata and the
outbound queue) into an empty PostgreSQL database at the current schema, in one transaction.

The embedded store must not be in use (its directory lock is taken, and an unclean shutdown is
recovered first, as opening it would). Uids, uidvalidities and modseqs are kept, so clients
see the same mailboxes; a body shared by several messages stays shared.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from pathlib import Path

import psycopg

from ..opening import close, lock_directory, recover
from ..segments import Location, SegmentLog
from ..store import SEGMENT_SIZE
from ..types import StoreError
from . import schema


class MigrationError(Exception):
    """The migration cannot start: no embedded store there, or a database not empty."""


def migrate(data_dir: Path, dsn: str) -> Counter[str]:
    """Copy the store of data_dir into the database at dsn; returns what was copied."""
    directory = Path(data_dir) / "store"
    if not (directory / "index.sqlite").is_file():
        raise MigrationError(f"no embedded store in {directory}")
    lock = lock_directory(directory)
    try:
        db, seglog, _, _ = recover(directory, SEGMENT_SIZE)
    except BaseException:
        os.close(lock)
        raise
    try:
        with psycopg.connect(dsn) as pg:
            schema.check(pg)
            with pg.transaction():
                return _copy(db.conn, seglog, pg)
    finally:
        close(db, seglog, lock)


def _copy(lite: sqlite3.Connection, seglog: SegmentLog, pg: psycopg.Connection) -> Counter[str]:
    if pg.execute("SELECT 1 FROM accounts LIMIT 1").fetchone():
        raise MigrationError("the database has accounts already: migrate into an empty one")
    copied: Counter[str] = Counter()
    for row in lite.execute("SELECT addr, pwhash, created, login_day FROM accounts"):
        pg.execute("INSERT INTO accounts VALUES (%s, %s, %s, %s)", row)
        copied["accounts"] += 1
    for (addr,) in lite.execute("SELECT addr FROM blocked"):
        pg.execute("INSERT INTO blocked VALUES (%s)", (addr,))
        copied["blocked"] += 1
    mailboxes = {}
    for old_id, *row in lite.execute(
        "SELECT id, addr, name, uidvalidity, uidnext, modseq, bytes, subscribed, special_use"
        " FROM mailboxes"
    ):
        new = pg.execute(
            "INSERT INTO mailboxes(addr, name, uidvalidity, uidnext, modseq, bytes, subscribed,"
            " special_use) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (*row[:6], bool(row[6]), row[7]),
        ).fetchone()
        assert new is not None
        mailboxes[old_id] = new[0]
        copied["mailboxes"] += 1
    pg.execute(
        "INSERT INTO counters(name, value) SELECT 'uidvalidity', COALESCE(MAX(uidvalidity), 0)"
        " FROM mailboxes"
    )
    bodies = _Bodies(seglog, pg)
    for mailbox, uid, seg, off, size, date, flags, modseq, push in lite.execute(
        "SELECT mailbox, uid, seg, off, size, date, flags, modseq, push FROM messages"
    ):
        pg.execute(
            "INSERT INTO messages(mailbox, uid, body, size, date, flags, modseq, push)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                mailboxes[mailbox],
                uid,
                bodies.id(Location(seg, off, size)),
                size,
                date,
                flags,
                modseq,
                push,
            ),
        )
        copied["messages"] += 1
    for row in lite.execute("SELECT addr, key, value FROM metadata"):
        pg.execute("INSERT INTO metadata VALUES (%s, %s, %s)", row)
        copied["metadata"] += 1
    for qid, sender, rcpts, seg, off, size, created, attempts, at, error in lite.execute(
        "SELECT id, sender, recipients, seg, off, size, created, attempts, next_attempt,"
        " last_error FROM queue"
    ):
        pg.execute(
            "INSERT INTO queue(id, sender, recipients, body, size, created, attempts,"
            " next_attempt, last_error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                qid,
                sender,
                rcpts.split("\n"),
                bodies.id(Location(seg, off, size)),
                size,
                created,
                attempts,
                at,
                error,
            ),
        )
        copied["queue"] += 1
    copied["bodies"] = len(bodies.ids)
    return copied


class _Bodies:
    """Each logged body once: copies of a message point at the same location in the log."""

    def __init__(self, seglog: SegmentLog, pg: psycopg.Connection) -> None:
        self.seglog = seglog
        self.pg = pg
        self.ids: dict[tuple[int, int], int] = {}

    def id(self, loc: Location) -> int:
        key = (loc.seg, loc.off)
        if key not in self.ids:
            try:
                data = self.seglog.read(loc)
            except OSError as e:
                raise StoreError(f"cannot read a body at {loc}: {e}") from e
            row = self.pg.execute(
                "INSERT INTO bodies(data) VALUES (%s) RETURNING id", (data,)
            ).fetchone()
            assert row is not None
            self.ids[key] = row[0]
        return self.ids[key]
