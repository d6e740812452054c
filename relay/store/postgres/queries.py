"""Read-only queries on PostgreSQL (each runs in its own short transaction)."""

from __future__ import annotations

from ..planner import to_datetime
from ..rules import canonical_name
from ..types import (
    AccountInfo,
    AuthRecord,
    MailboxEntry,
    MailboxSnapshot,
    NoSuchAccount,
    NoSuchMailbox,
    NoSuchMessage,
)
from .mail import message_meta
from .tx import Mailbox, Tx


def auth_record(tx: Tx, addr: str) -> AuthRecord:
    row = tx.one("SELECT pwhash, login_day FROM accounts WHERE addr=%s", (addr,))
    blocked = is_blocked(tx, addr)
    return AuthRecord(row[0], blocked, row[1]) if row else AuthRecord(None, blocked, 0)


def account_exists(tx: Tx, addr: str) -> bool:
    return tx.one("SELECT 1 FROM accounts WHERE addr=%s", (addr,)) is not None


def account_count(tx: Tx) -> int:
    return int(tx.one("SELECT COUNT(*) FROM accounts")[0])


def account_hashes(tx: Tx) -> list[tuple[str, str]]:
    return [(a, h) for a, h in tx.execute("SELECT addr, pwhash FROM accounts ORDER BY addr")]


def is_blocked(tx: Tx, addr: str) -> bool:
    return tx.one("SELECT 1 FROM blocked WHERE addr=%s", (addr,)) is not None


def blocked_addresses(tx: Tx) -> list[str]:
    return [row[0] for row in tx.execute("SELECT addr FROM blocked ORDER BY addr")]


def account_list(tx: Tx) -> list[AccountInfo]:
    rows = tx.execute(
        "SELECT a.addr, a.created, a.login_day, COALESCE(SUM(b.bytes), 0) FROM accounts a"
        " LEFT JOIN mailboxes b ON b.addr = a.addr GROUP BY a.addr ORDER BY a.addr"
    )
    return [
        AccountInfo(addr, to_datetime(created), day, int(used))
        for addr, created, day, used in rows.fetchall()
    ]


def _mailbox(tx: Tx, addr: str, name: str) -> Mailbox:
    mbx = tx.find_mailbox(addr, name)
    if mbx is None:
        if not account_exists(tx, addr):
            raise NoSuchAccount(addr)
        raise NoSuchMailbox(f"no such mailbox: {canonical_name(name)}")
    return mbx


def list_mailboxes(tx: Tx, addr: str) -> list[MailboxEntry]:
    if not account_exists(tx, addr):
        raise NoSuchAccount(addr)
    rows = tx.execute(
        "SELECT name, subscribed, special_use FROM mailboxes WHERE addr=%s ORDER BY name", (addr,)
    )
    return [MailboxEntry(name, bool(sub), su) for name, sub, su in rows.fetchall()]


def snapshot(tx: Tx, addr: str, name: str) -> MailboxSnapshot:
    tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # mailbox and rows agree
    mbx = _mailbox(tx, addr, name)
    rows = tx.execute(
        "SELECT uid, flags, size, date, modseq FROM messages WHERE mailbox=%s ORDER BY uid",
        (mbx.id,),
    )
    messages = [message_meta(r) for r in rows.fetchall()]
    return MailboxSnapshot(mbx.uidvalidity, mbx.uidnext, messages, mbx.modseq)


def read(tx: Tx, addr: str, name: str, uid: int) -> bytes:
    mbx = _mailbox(tx, addr, name)
    row = tx.one(
        "SELECT b.data FROM messages m JOIN bodies b ON b.id = m.body"
        " WHERE m.mailbox=%s AND m.uid=%s",
        (mbx.id, uid),
    )
    if row is None:
        raise NoSuchMessage(f"{name} uid {uid}")
    return bytes(row[0])


def get_metadata(tx: Tx, addr: str, key: str) -> str | None:
    row = tx.one("SELECT value FROM metadata WHERE addr=%s AND key=%s", (addr, key))
    return row[0] if row else None


def quota_usage(tx: Tx, addr: str) -> int:
    return tx.account_usage(addr)
