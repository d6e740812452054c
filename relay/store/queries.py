"""Read-only index queries (they never write): point reads through Database.query on the event
loop, listings through Database.run in a worker thread."""

from __future__ import annotations

import sqlite3

from .planner import find_mailbox, message_meta, to_datetime
from .rules import canonical_name
from .segments import Location, SegmentLog
from .types import (
    AccountInfo,
    AuthRecord,
    MailboxEntry,
    MailboxSnapshot,
    NoSuchAccount,
    NoSuchMailbox,
    NoSuchMessage,
    NoSuchQueueEntry,
    QueueEntry,
)


def auth_record(conn: sqlite3.Connection, addr: str) -> AuthRecord:
    row = conn.execute("SELECT pwhash, login_day FROM accounts WHERE addr=?", (addr,)).fetchone()
    blocked = is_blocked(conn, addr)
    return AuthRecord(row[0], blocked, row[1]) if row else AuthRecord(None, blocked, 0)


def account_exists(conn: sqlite3.Connection, addr: str) -> bool:
    return conn.execute("SELECT 1 FROM accounts WHERE addr=?", (addr,)).fetchone() is not None


def account_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM accounts").fetchone()[0]


def account_hashes(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return conn.execute("SELECT addr, pwhash FROM accounts ORDER BY addr").fetchall()


def is_blocked(conn: sqlite3.Connection, addr: str) -> bool:
    return conn.execute("SELECT 1 FROM blocked WHERE addr=?", (addr,)).fetchone() is not None


def blocked_addresses(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT addr FROM blocked ORDER BY addr")]


def account_list(conn: sqlite3.Connection) -> list[AccountInfo]:
    rows = conn.execute(
        "SELECT a.addr, a.created, a.login_day, COALESCE(SUM(b.bytes), 0) FROM accounts a"
        " LEFT JOIN mailboxes b ON b.addr = a.addr GROUP BY a.addr ORDER BY a.addr"
    )
    return [AccountInfo(addr, to_datetime(created), day, used) for addr, created, day, used in rows]


def _require_account(conn: sqlite3.Connection, addr: str) -> None:
    if not account_exists(conn, addr):
        raise NoSuchAccount(addr)


def list_mailboxes(conn: sqlite3.Connection, addr: str) -> list[MailboxEntry]:
    _require_account(conn, addr)
    rows = conn.execute(
        "SELECT name, subscribed, special_use FROM mailboxes WHERE addr=? ORDER BY name", (addr,)
    )
    return [MailboxEntry(name, bool(sub), su) for name, sub, su in rows]


def snapshot(conn: sqlite3.Connection, addr: str, name: str) -> MailboxSnapshot:
    mbx = find_mailbox(conn, addr, name)
    if mbx is None:
        _require_account(conn, addr)
        raise NoSuchMailbox(f"no such mailbox: {canonical_name(name)}")
    rows = conn.execute(
        "SELECT uid, flags, size, date, modseq FROM messages WHERE mailbox=? ORDER BY uid",
        (mbx.id,),
    )
    return MailboxSnapshot(
        mbx.uidvalidity, mbx.uidnext, [message_meta(r) for r in rows], mbx.modseq
    )


def locate(conn: sqlite3.Connection, addr: str, name: str, uid: int) -> Location:
    mbx = find_mailbox(conn, addr, name)
    if mbx is None:
        _require_account(conn, addr)
        raise NoSuchMailbox(f"no such mailbox: {canonical_name(name)}")
    row = conn.execute(
        "SELECT seg, off, size FROM messages WHERE mailbox=? AND uid=?", (mbx.id, uid)
    ).fetchone()
    if row is None:
        raise NoSuchMessage(f"{name} uid {uid}")
    return Location(*row)


def get_metadata(conn: sqlite3.Connection, addr: str, key: str) -> str | None:
    row = conn.execute("SELECT value FROM metadata WHERE addr=? AND key=?", (addr, key)).fetchone()
    return row[0] if row else None


def quota_usage(conn: sqlite3.Connection, addr: str) -> int:
    return conn.execute("SELECT SUM(bytes) FROM mailboxes WHERE addr=?", (addr,)).fetchone()[0] or 0


def queue_list(conn: sqlite3.Connection) -> list[QueueEntry]:
    rows = conn.execute(
        "SELECT id, sender, recipients, size, created, attempts, next_attempt, last_error"
        " FROM queue ORDER BY next_attempt, created, id"
    )
    return [
        QueueEntry(qid, sender, rcpts.split("\n"), size, to_datetime(c), n, to_datetime(at), err)
        for qid, sender, rcpts, size, c, n, at, err in rows
    ]


def queue_locate(conn: sqlite3.Connection, qid: str) -> Location:
    row = conn.execute("SELECT seg, off, size FROM queue WHERE id=?", (qid,)).fetchone()
    if row is None:
        raise NoSuchQueueEntry(qid)
    return Location(*row)


def drop_dead_segments(conn: sqlite3.Connection, log: SegmentLog, today: int) -> int:
    """Unlink every segment no message or queue entry points into. Runs between batches.

    The index must be durable before the log records it was built from disappear, so the WAL is
    checkpointed first; when nothing is dead nothing at all is written.
    """
    live = {
        r[0] for r in conn.execute("SELECT DISTINCT seg FROM messages UNION SELECT seg FROM queue")
    }
    dead = [
        s
        for s in log.segment_ids()
        if s not in live and not (s == log.active and log.active_day >= today)
    ]
    if dead:
        conn.execute("PRAGMA wal_checkpoint(FULL)")
        for s in dead:
            log.drop(s)
    return len(dead)
