"""The SQLite index and the one function that changes it: apply(record).

Every change to the index is a log record first. The writer applies the records of a batch after
the batch is durable, and recovery applies the records found beyond the index's position in the
log with the very same function, so the index is always a replay of the log.

Connection settings: WAL with synchronous=NORMAL (the log, not SQLite, is what makes an
acknowledgement durable) and locking_mode=EXCLUSIVE, which keeps the WAL index in process memory
instead of a -shm file: reads then never dirty a page on disk, so an idle store writes nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from .segments import Location

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts(
    addr TEXT PRIMARY KEY, pwhash TEXT NOT NULL, created INTEGER NOT NULL,
    login_day INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocked(addr TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailboxes(
    id INTEGER PRIMARY KEY, addr TEXT NOT NULL, name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL, modseq INTEGER NOT NULL,
    bytes INTEGER NOT NULL, subscribed INTEGER NOT NULL, special_use TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS mailboxes_by_name ON mailboxes(addr, name);
CREATE TABLE IF NOT EXISTS messages(
    mailbox INTEGER NOT NULL, uid INTEGER NOT NULL, seg INTEGER NOT NULL, off INTEGER NOT NULL,
    size INTEGER NOT NULL, date INTEGER NOT NULL, flags TEXT NOT NULL, modseq INTEGER NOT NULL,
    push TEXT NOT NULL DEFAULT '', PRIMARY KEY(mailbox, uid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metadata(
    addr TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY(addr, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue(
    id TEXT PRIMARY KEY, sender TEXT NOT NULL, recipients TEXT NOT NULL, seg INTEGER NOT NULL,
    off INTEGER NOT NULL, size INTEGER NOT NULL, created INTEGER NOT NULL,
    attempts INTEGER NOT NULL, next_attempt INTEGER NOT NULL, last_error TEXT NOT NULL)
    WITHOUT ROWID;
"""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # Small pages: a batch touches a few scattered B-tree leaves, and each modified page costs a
    # whole page in the WAL (measured with bench/writeamp: 4 KiB pages cost about 3x more).
    conn.execute("PRAGMA page_size=1024")
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # the writer checkpoints: checkpoint_due()
    conn.executescript(SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
    if "push" not in columns:  # an index made before push notifications
        conn.execute("ALTER TABLE messages ADD COLUMN push TEXT NOT NULL DEFAULT ''")
    return conn


# Checkpoint once the WAL holds this many pages (SQLite's automatic checkpoint would, but inside
# a COMMIT on the event loop, with its two fsyncs). Larger means fewer rewrites of pages that
# change often (measured with bench/writeamp).
CHECKPOINT_PAGES = 4000
WAL_HEADER, FRAME_HEADER = 32, 24


def checkpoint_due(wal: Path, page_size: int) -> bool:
    """Whether the WAL is full enough to checkpoint. The checkpoint truncates it, so its size
    counts the frames written since."""
    try:
        size = wal.stat().st_size
    except FileNotFoundError:
        return False
    return size >= WAL_HEADER + CHECKPOINT_PAGES * (page_size + FRAME_HEADER)


def checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def get_meta(conn: sqlite3.Connection, key: str, default: int = 0) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return row[0] if row else default


def set_meta(conn: sqlite3.Connection, key: str, value: int) -> None:
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


def _raise_meta(conn: sqlite3.Connection, key: str, value: int) -> None:
    if get_meta(conn, key) < value:
        set_meta(conn, key, value)


def apply(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    """Apply one log record to the index. Must be deterministic: it runs again on recovery."""
    _APPLY[r["t"]](conn, r, loc)


def _acct_create(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO accounts(addr, pwhash, created, login_day) VALUES (?, ?, ?, ?)",
        (r["a"], r["h"], r["c"], r["d"]),
    )


def _acct_login(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    conn.execute("UPDATE accounts SET login_day=? WHERE addr=?", (r["d"], r["a"]))


def _acct_delete(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    addr = r["a"]
    conn.execute(
        "DELETE FROM messages WHERE mailbox IN (SELECT id FROM mailboxes WHERE addr=?)", (addr,)
    )
    conn.execute("DELETE FROM mailboxes WHERE addr=?", (addr,))
    conn.execute("DELETE FROM metadata WHERE addr=?", (addr,))
    conn.execute("DELETE FROM accounts WHERE addr=?", (addr,))


def _block(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    conn.execute("INSERT OR IGNORE INTO blocked(addr) VALUES (?)", (r["a"],))


def _unblock(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    conn.execute("DELETE FROM blocked WHERE addr=?", (r["a"],))


def _mbx_create(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    conn.execute(
        "INSERT INTO mailboxes(id, addr, name, uidvalidity, uidnext, modseq, bytes, subscribed,"
        " special_use) VALUES (?, ?, ?, ?, 1, 1, 0, ?, ?)",
        (r["id"], r["a"], r["n"], r["v"], r["s"], r["su"]),
    )
    _raise_meta(conn, "next_mailbox", r["id"] + 1)
    _raise_meta(conn, "uidvalidity", r["v"])


def _mbx_delete(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    conn.execute("DELETE FROM messages WHERE mailbox=?", (r["id"],))
    conn.execute("DELETE FROM mailboxes WHERE id=?", (r["id"],))


def _mbx_rename(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    conn.execute("UPDATE mailboxes SET name=? WHERE id=?", (r["n"], r["id"]))


def _mbx_subscribe(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    conn.execute("UPDATE mailboxes SET subscribed=? WHERE id=?", (r["on"], r["id"]))


def _msg(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    """A new message: its body is in this record, or (copies) at a location already logged."""
    if "seg" in r:
        loc = Location(r["seg"], r["off"], r["size"])
    assert loc is not None
    conn.execute(
        "INSERT INTO messages(mailbox, uid, seg, off, size, date, flags, modseq, push)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (r["m"], r["u"], loc.seg, loc.off, loc.size, r["d"], r["f"], r["ms"], r.get("p", "")),
    )
    conn.execute(
        "UPDATE mailboxes SET uidnext=?, modseq=?, bytes=bytes+? WHERE id=?",
        (r["u"] + 1, r["ms"], loc.size, r["m"]),
    )


def _flags(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    conn.executemany(
        "UPDATE messages SET flags=?, modseq=? WHERE mailbox=? AND uid=?",
        [(flags, r["ms"], r["m"], uid) for uid, flags in r["c"]],
    )
    conn.execute("UPDATE mailboxes SET modseq=? WHERE id=?", (r["ms"], r["m"]))


def _redate(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    conn.executemany(
        "UPDATE messages SET date=? WHERE mailbox=? AND uid=?",
        [(r["d"], r["m"], u) for u in r["u"]],
    )


def _push_done(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    for mailbox, uid, key in r["i"]:
        row = conn.execute(
            "SELECT push FROM messages WHERE mailbox=? AND uid=?", (mailbox, uid)
        ).fetchone()
        if row is not None:  # else expunged meanwhile
            left = " ".join(k for k in row[0].split() if k != key)
            conn.execute(
                "UPDATE messages SET push=? WHERE mailbox=? AND uid=?", (left, mailbox, uid)
            )


def _expunge(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    freed = 0
    for uid in r["u"]:
        row = conn.execute(
            "DELETE FROM messages WHERE mailbox=? AND uid=? RETURNING size", (r["m"], uid)
        ).fetchone()
        freed += row[0] if row else 0
    conn.execute(
        "UPDATE mailboxes SET modseq=?, bytes=bytes-? WHERE id=?", (r["ms"], freed, r["m"])
    )


def _metadata(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    if r["v"] is None:
        conn.execute("DELETE FROM metadata WHERE addr=? AND key=?", (r["a"], r["k"]))
    else:
        conn.execute(
            "INSERT OR REPLACE INTO metadata(addr, key, value) VALUES (?, ?, ?)",
            (r["a"], r["k"], r["v"]),
        )


def _queue_add(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    assert loc is not None
    conn.execute(
        "INSERT INTO queue(id, sender, recipients, seg, off, size, created, attempts,"
        " next_attempt, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, '')",
        (r["id"], r["s"], "\n".join(r["r"]), loc.seg, loc.off, loc.size, r["c"], r["c"]),
    )


def _queue_update(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    conn.execute(
        "UPDATE queue SET attempts=?, next_attempt=?, last_error=? WHERE id=?",
        (r["n"], r["at"], r["e"], r["id"]),
    )


def _queue_remove(conn: sqlite3.Connection, r: dict[str, Any], loc: Location | None) -> None:
    if r["r"]:
        conn.execute("UPDATE queue SET recipients=? WHERE id=?", ("\n".join(r["r"]), r["id"]))
    else:
        conn.execute("DELETE FROM queue WHERE id=?", (r["id"],))


_APPLY = {
    "acct": _acct_create,
    "login": _acct_login,
    "acct_del": _acct_delete,
    "block": _block,
    "unblock": _unblock,
    "mbx": _mbx_create,
    "mbx_del": _mbx_delete,
    "mbx_ren": _mbx_rename,
    "mbx_sub": _mbx_subscribe,
    "msg": _msg,
    "flags": _flags,
    "expunge": _expunge,
    "redate": _redate,
    "push_del": _push_done,
    "meta": _metadata,
    "q_add": _queue_add,
    "q_upd": _queue_update,
    "q_del": _queue_remove,
}
