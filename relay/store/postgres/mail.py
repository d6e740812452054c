"""Mail operations on PostgreSQL: append, flags, expunge, copy/move, mailboxes, and the quota
rules (relay/store/rules.py) that delivery and append share with the embedded store.

Every function runs inside one transaction (Tx) with the account's row locked first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .. import rules
from ..ops_mail import header_section
from ..planner import to_datetime
from ..rules import canonical_name, decode_flags, encode_flags, normalize_flags
from ..types import FlagMode, MailboxError, MessageMeta, QuotaExceeded
from .tx import Mailbox, Tx


def message_meta(row: tuple[Any, ...]) -> MessageMeta:
    """Row (uid, flags, size, date, modseq) -> MessageMeta."""
    uid, flags, size, date, modseq = row
    return MessageMeta(uid, decode_flags(flags), size, to_datetime(date), modseq)


def store_body(tx: Tx, data: bytes) -> int:
    return int(tx.one("INSERT INTO bodies(data) VALUES (%s) RETURNING id", (data,))[0])


def insert(
    tx: Tx,
    mbx: Mailbox,
    flags: frozenset[str],
    date: int,
    body: int,
    size: int,
    *,
    push: str = "",
    header: bytes = b"",
) -> int:
    """Add one message pointing at body to mbx; returns its uid."""
    uid, ms = mbx.uidnext, mbx.modseq + 1
    tx.execute(
        "INSERT INTO messages(mailbox, uid, body, size, date, flags, modseq, push)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (mbx.id, uid, body, size, date, encode_flags(flags), ms, push),
    )
    tx.execute(
        "UPDATE mailboxes SET uidnext=%s, modseq=%s, bytes=bytes+%s WHERE id=%s",
        (uid + 1, ms, size, mbx.id),
    )
    mbx.uidnext, mbx.modseq, mbx.bytes = uid + 1, ms, mbx.bytes + size
    added = (MessageMeta(uid, flags, size, to_datetime(date), ms),) if header else ()
    tx.event(mbx.addr, mbx.name, "exists", [uid], added, header)
    return uid


def make_room(tx: Tx, addr: str, size: int) -> None:
    """chatmail quota behaviour for one (locked) recipient; QuotaExceeded if it cannot take size."""
    quota = tx.config.limits.max_mailbox_size
    plan = rules.make_room(tx.account_usage(addr), size, quota, _oldest_first(tx, addr), tx.now)
    if not plan.fits:
        raise QuotaExceeded(addr)
    expunge_pairs(tx, addr, plan.expunge)


def expire_oldest(tx: Tx, addr: str, target: int) -> int:
    victims, _ = rules.oldest_to_expunge(
        tx.account_usage(addr), target, _oldest_first(tx, addr), tx.now
    )
    return expunge_pairs(tx, addr, victims)


def _oldest_first(tx: Tx, addr: str) -> Iterator[rules.MessageRow]:
    # A generator: the query runs only when the rules look at the messages.
    rows = tx.execute(
        "SELECT m.mailbox, m.uid, m.size, m.date FROM messages m JOIN mailboxes b"
        " ON b.id = m.mailbox WHERE b.addr=%s ORDER BY m.date, m.mailbox, m.uid",
        (addr,),
    )
    for mailbox, uid, size, date in rows.fetchall():
        yield int(mailbox), int(uid), int(size), int(date)


def expunge_pairs(tx: Tx, addr: str, pairs: Iterable[tuple[int, int]]) -> int:
    by_mailbox: dict[int, list[int]] = {}
    for mailbox_id, uid in pairs:
        by_mailbox.setdefault(mailbox_id, []).append(uid)
    for mailbox_id, uids in by_mailbox.items():
        expunge_ids(tx, addr, mailbox_id, uids)
    return sum(len(u) for u in by_mailbox.values())


def expunge_ids(tx: Tx, addr: str, mailbox_id: int, uids: list[int]) -> None:
    gone = tx.execute(
        "DELETE FROM messages WHERE mailbox=%s AND uid = ANY(%s) RETURNING size, body",
        (mailbox_id, uids),
    ).fetchall()
    row = tx.one(
        "UPDATE mailboxes SET modseq=modseq+1, bytes=bytes-%s WHERE id=%s RETURNING name",
        (sum(size for size, _ in gone), mailbox_id),
    )
    drop_unused_bodies(tx, {body for _, body in gone})
    tx.event(addr, row[0], "expunge", uids)


def drop_unused_bodies(tx: Tx, bodies: Iterable[int]) -> None:
    """Delete the bodies no message or queue entry points at any more."""
    ids = sorted(set(bodies))
    if ids:
        tx.execute(
            "DELETE FROM bodies b WHERE b.id = ANY(%s)"
            " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.body = b.id)"
            " AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.body = b.id)",
            (ids,),
        )


def store_copies(
    tx: Tx, addrs: Sequence[str], data: bytes, push: dict[str, str] | None = None
) -> dict[str, tuple[int, int]]:
    """Insert data into the INBOX of each (locked) addr, room already made: one body row for
    all. Returns (mailbox id, uid) per addr."""
    body = store_body(tx, data)
    date = int(tx.now)
    header = header_section(data)
    placed = {}
    for addr in addrs:
        mbx = tx.mailbox(addr, "INBOX")  # read now: room-making may have changed it
        keys = (push or {}).get(addr, "")
        uid = insert(tx, mbx, frozenset(), date, body, len(data), push=keys, header=header)
        placed[addr] = (mbx.id, uid)
    return placed


def append(
    tx: Tx, addr: str, mailbox: str, data: bytes, flags: Iterable[str], date: int | None
) -> tuple[int, int]:
    tx.require_account(addr)
    tx.mailbox(addr, mailbox)
    make_room(tx, addr, len(data))
    mbx = tx.mailbox(addr, mailbox)
    when = int(tx.now) if date is None else date
    body = store_body(tx, data)
    uid = insert(
        tx, mbx, normalize_flags(flags), when, body, len(data), header=header_section(data)
    )
    return mbx.uidvalidity, uid


def _rows(tx: Tx, mailbox_id: int, uids: Sequence[int]) -> list[tuple[int, str, int, int, int]]:
    """(uid, flags, size, date, modseq) of the existing messages among uids, sorted by uid."""
    return tx.execute(
        "SELECT uid, flags, size, date, modseq FROM messages WHERE mailbox=%s AND uid = ANY(%s)"
        " ORDER BY uid",
        (mailbox_id, sorted(set(uids))),
    ).fetchall()


def set_flags(
    tx: Tx, addr: str, mailbox: str, uids: Sequence[int], flags: Iterable[str], mode: FlagMode
) -> list[MessageMeta]:
    tx.require_account(addr)
    mbx = tx.mailbox(addr, mailbox)
    wanted = normalize_flags(flags)
    changes = []
    for uid, old_text, *_ in _rows(tx, mbx.id, uids):
        old = decode_flags(old_text)
        new = {"add": old | wanted, "remove": old - wanted, "replace": wanted}[mode]
        if new != old:
            changes.append((encode_flags(new), uid))
    if changes:
        ms = mbx.modseq + 1
        tx.conn.cursor().executemany(
            "UPDATE messages SET flags=%s, modseq=%s WHERE mailbox=%s AND uid=%s",
            [(flags_text, ms, mbx.id, uid) for flags_text, uid in changes],
        )
        tx.execute("UPDATE mailboxes SET modseq=%s WHERE id=%s", (ms, mbx.id))
        tx.event(addr, mbx.name, "flags", [uid for _, uid in changes])
    return [message_meta(r) for r in _rows(tx, mbx.id, uids)]


def expunge(tx: Tx, addr: str, mailbox: str, uids: Sequence[int] | None) -> list[int]:
    tx.require_account(addr)
    mbx = tx.mailbox(addr, mailbox)
    if uids is None:
        found = tx.execute(
            "SELECT uid FROM messages WHERE mailbox=%s AND strpos(' ' || flags || ' ', %s) > 0"
            " ORDER BY uid",
            (mbx.id, " \\Deleted "),
        )
        gone = [int(r[0]) for r in found]
    else:
        gone = [int(r[0]) for r in _rows(tx, mbx.id, uids)]
    if gone:
        expunge_ids(tx, addr, mbx.id, gone)
    return gone


def copy(
    tx: Tx, addr: str, src: str, uids: Sequence[int], dst: str, *, move: bool = False
) -> list[tuple[int, int]]:
    """COPY (or MOVE): new uids in dst pointing at the same body rows; no body is rewritten."""
    tx.require_account(addr)
    source = tx.mailbox(addr, src)
    target = tx.mailbox(addr, dst)
    if move and source.id == target.id:
        raise MailboxError("cannot move a message to the mailbox it is in")
    rows = tx.execute(
        "SELECT uid, flags, body, size, date FROM messages WHERE mailbox=%s AND uid = ANY(%s)"
        " ORDER BY uid",
        (source.id, sorted(set(uids))),
    ).fetchall()
    pairs = []
    for uid, flags, body, size, date in rows:
        new_uid = insert(tx, target, decode_flags(flags), date, body, size)
        pairs.append((int(uid), new_uid))
    if move and pairs:
        expunge_ids(tx, addr, source.id, [a for a, _ in pairs])
    return pairs


# -- mailboxes ------------------------------------------------------------------------------


def create_mailbox(tx: Tx, addr: str, name: str, *, subscribed: bool = True) -> None:
    tx.require_account(addr)
    name = canonical_name(name)
    if not name or tx.find_mailbox(addr, name):
        raise MailboxError(f"mailbox already exists: {name}")
    tx.execute(
        "INSERT INTO mailboxes(addr, name, uidvalidity, subscribed, special_use)"
        " VALUES (%s, %s, %s, %s, %s)",
        (
            addr,
            name,
            tx.next_counter("uidvalidity", int(tx.now)),
            subscribed,
            rules.special_use(name),
        ),
    )


def delete_mailbox(tx: Tx, addr: str, name: str) -> None:
    if canonical_name(name) == "INBOX":
        raise MailboxError("INBOX cannot be deleted")
    tx.require_account(addr)
    mbx = tx.mailbox(addr, name)
    bodies = tx.execute("DELETE FROM messages WHERE mailbox=%s RETURNING body", (mbx.id,))
    gone = {r[0] for r in bodies.fetchall()}
    tx.execute("DELETE FROM mailboxes WHERE id=%s", (mbx.id,))
    drop_unused_bodies(tx, gone)


def rename_mailbox(tx: Tx, addr: str, old: str, new: str) -> None:
    if canonical_name(old) == "INBOX":
        raise MailboxError("renaming INBOX is not supported")
    tx.require_account(addr)
    mbx = tx.mailbox(addr, old)
    new = canonical_name(new)
    if not new or tx.find_mailbox(addr, new):
        raise MailboxError(f"mailbox already exists: {new}")
    tx.execute("UPDATE mailboxes SET name=%s WHERE id=%s", (new, mbx.id))


def subscribe(tx: Tx, addr: str, name: str, on: bool) -> None:
    tx.require_account(addr)
    mbx = tx.mailbox(addr, name)
    if mbx.subscribed != on:
        tx.execute("UPDATE mailboxes SET subscribed=%s WHERE id=%s", (on, mbx.id))
