"""Account, metadata, queue and expiry operations planned by the writer (see ops_mail)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from .ops_mail import create_mailbox, expire_oldest, expunge_ids
from .planner import Planner
from .types import NoSuchQueueEntry

LARGE_MESSAGE = 200_000  # chatmail: "large" mail is expired sooner once a client has seen it


def create_account(p: Planner, addr: str, pwhash: str) -> str:
    """'created', or 'exists' when a concurrent first login won, or 'blocked'."""
    if p.conn.execute("SELECT 1 FROM blocked WHERE addr=?", (addr,)).fetchone():
        return "blocked"
    if p.conn.execute("SELECT 1 FROM accounts WHERE addr=?", (addr,)).fetchone():
        return "exists"
    p.emit({"t": "acct", "a": addr, "h": pwhash, "c": int(p.now), "d": p.today()})
    create_mailbox(p, addr, "INBOX")
    return "created"


def touch_login(p: Planner, addr: str) -> None:
    row = p.conn.execute("SELECT login_day FROM accounts WHERE addr=?", (addr,)).fetchone()
    if row and row[0] < p.today():
        p.emit({"t": "login", "a": addr, "d": p.today()})


def delete_account(p: Planner, addr: str) -> None:
    if p.conn.execute("SELECT 1 FROM accounts WHERE addr=?", (addr,)).fetchone():
        p.emit({"t": "acct_del", "a": addr})
        p.event(addr, "", "resync", ())


def block(p: Planner, addr: str) -> None:
    """Block an address: its account (if any) is removed and it can never be created again."""
    delete_account(p, addr)
    if not p.conn.execute("SELECT 1 FROM blocked WHERE addr=?", (addr,)).fetchone():
        p.emit({"t": "block", "a": addr})


def set_metadata(p: Planner, addr: str, key: str, value: str | None) -> None:
    p.require_account(addr)
    row = p.conn.execute("SELECT value FROM metadata WHERE addr=? AND key=?", (addr, key))
    old = row.fetchone()
    if (old[0] if old else None) != value:
        p.emit({"t": "meta", "a": addr, "k": key, "v": value})


# -- outbound queue -------------------------------------------------------------------------


def enqueue(p: Planner, sender: str, recipients: Sequence[str], data: bytes) -> str:
    qid = secrets.token_hex(8)
    p.emit({"t": "q_add", "id": qid, "s": sender, "r": list(recipients), "c": int(p.now)}, data)
    return qid


def _queue_row(p: Planner, qid: str) -> tuple[str, int, int, str]:
    row = p.conn.execute(
        "SELECT recipients, attempts, next_attempt, last_error FROM queue WHERE id=?", (qid,)
    ).fetchone()
    if row is None:
        raise NoSuchQueueEntry(qid)
    return row


def queue_update(
    p: Planner, qid: str, attempts: int | None, next_attempt: int | None, last_error: str | None
) -> None:
    _, old_attempts, old_next, old_error = _queue_row(p, qid)
    p.emit(
        {
            "t": "q_upd",
            "id": qid,
            "n": old_attempts if attempts is None else attempts,
            "at": old_next if next_attempt is None else next_attempt,
            "e": old_error if last_error is None else last_error,
        }
    )


def queue_remove(p: Planner, qid: str, recipients: Sequence[str] | None) -> None:
    """Remove the entry, or only some recipients (the entry goes when none is left)."""
    current = _queue_row(p, qid)[0].split("\n")
    left = [] if recipients is None else [r for r in current if r not in set(recipients)]
    if left != current:
        p.emit({"t": "q_del", "id": qid, "r": left})


# -- expiry (chatmail-expire, in process) ---------------------------------------------------


@dataclass
class ExpiryResult:
    accounts: int = 0
    messages: int = 0
    segments: int = 0


def expire(p: Planner) -> ExpiryResult:
    """One expiry pass; emits nothing (so nothing is written) when nothing is due."""
    ret = p.config.retention
    day = 86400
    result = ExpiryResult()
    inactive_before = p.today() - ret.delete_inactive_users_after
    for (addr,) in p.conn.execute(
        "SELECT addr FROM accounts WHERE login_day < ?", (inactive_before,)
    ).fetchall():
        delete_account(p, addr)
        result.accounts += 1
    old = p.now - ret.delete_mails_after * day
    old_large = p.now - ret.delete_large_after * day
    due = p.conn.execute(
        "SELECT b.addr, m.mailbox, m.uid FROM messages m JOIN mailboxes b ON b.id = m.mailbox"
        " WHERE m.date < ? OR (m.size > ? AND m.date < ? AND ' ' || m.flags || ' ' LIKE ?)"
        " ORDER BY m.mailbox, m.uid",
        (old, LARGE_MESSAGE, old_large, "% \\Seen %"),
    ).fetchall()
    by_mailbox: dict[tuple[str, int], list[int]] = {}
    for addr, mailbox_id, uid in due:
        by_mailbox.setdefault((addr, mailbox_id), []).append(uid)
    for (addr, mailbox_id), uids in by_mailbox.items():
        expunge_ids(p, addr, mailbox_id, uids)
        result.messages += len(uids)
    quota = p.config.limits.max_mailbox_size
    for (addr,) in p.conn.execute(
        "SELECT addr FROM mailboxes GROUP BY addr HAVING SUM(bytes) > ?", (int(quota * 0.7),)
    ).fetchall():
        result.messages += expire_oldest(p, addr, int(quota * 0.7))
    return result
