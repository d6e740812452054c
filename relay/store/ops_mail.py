"""Mail operations planned by the writer: delivery, append, flags, expunge, copy, mailboxes.

Each function takes the Planner first, validates against the index, emits log records and
events, and returns the caller's result. Raising a StoreError discards everything it emitted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from . import rules
from .planner import Mailbox, Planner, message_meta, to_datetime
from .rules import canonical_name, decode_flags, encode_flags, normalize_flags
from .segments import Location
from .types import FlagMode, MailboxError, MessageMeta, QuotaExceeded


def _insert(
    p: Planner,
    mbx: Mailbox,
    flags: frozenset[str],
    date: int,
    *,
    body: bytes | None = None,
    loc: Location | None = None,
    push: str = "",
    header: bytes = b"",
) -> tuple[int, Location]:
    """Add one message to mbx: with its body (first copy) or pointing at an already logged body;
    `push`: the keys of the device tokens to notify of it (relay/store/ops_push.py); `header`:
    the message's header section when the caller has it, for the watchers' event."""
    uid, ms = mbx.uidnext, mbx.modseq + 1
    rec = {"t": "msg", "m": mbx.id, "u": uid, "f": encode_flags(flags), "d": date, "ms": ms}
    if push:
        rec["p"] = push
    if loc is None:
        new_loc = p.emit(rec, body)
        assert new_loc is not None
        loc = new_loc
    else:
        p.emit(rec | {"seg": loc.seg, "off": loc.off, "size": loc.size})
    mbx.uidnext, mbx.modseq, mbx.bytes = uid + 1, ms, mbx.bytes + loc.size
    added = (MessageMeta(uid, flags, loc.size, to_datetime(date), ms),) if header else ()
    p.event(mbx.addr, mbx.name, "exists", [uid], added, header)
    return uid, loc


def header_section(data: bytes) -> bytes:
    """The header of a message up to its empty line (bounded: a message without one gives its
    first 64 KiB, which holds any header a client sends)."""
    end = data.find(b"\r\n\r\n", 0, 1 << 16)
    if end < 0:
        end = data.find(b"\n\n", 0, 1 << 16)
        return data[: end + 2] if end >= 0 else data[: 1 << 16]
    return data[: end + 4]


def make_room(p: Planner, addr: str, size: int) -> None:
    """chatmail quota behaviour for one recipient; raises QuotaExceeded if it cannot take size."""
    plan = rules.make_room(
        p.account_usage(addr), size, p.config.limits.max_mailbox_size, _oldest_first(p, addr), p.now
    )
    if not plan.fits:
        raise QuotaExceeded(addr)
    expunge_pairs(p, addr, plan.expunge)


def expire_oldest(p: Planner, addr: str, target: int) -> int:
    """Expunge the account's oldest messages until usage <= target; spares mail under a day old."""
    victims, _ = rules.oldest_to_expunge(
        p.account_usage(addr), target, _oldest_first(p, addr), p.now
    )
    return expunge_pairs(p, addr, victims)


def _oldest_first(p: Planner, addr: str) -> Iterator[rules.MessageRow]:
    # A generator, so the query only runs when the rules actually look at the messages.
    yield from p.conn.execute(
        "SELECT m.mailbox, m.uid, m.size, m.date FROM messages m JOIN mailboxes b"
        " ON b.id = m.mailbox WHERE b.addr=? ORDER BY m.date, m.mailbox, m.uid",
        (addr,),
    )


def expunge_pairs(p: Planner, addr: str, pairs: Iterable[tuple[int, int]]) -> int:
    """Expunge (mailbox id, uid) pairs of one account: one record per mailbox, in first-seen
    order. Returns how many messages went."""
    by_mailbox: dict[int, list[int]] = {}
    for mailbox_id, uid in pairs:
        by_mailbox.setdefault(mailbox_id, []).append(uid)
    for mailbox_id, uids in by_mailbox.items():
        expunge_ids(p, addr, mailbox_id, uids)
    return sum(len(u) for u in by_mailbox.values())


def expunge_ids(p: Planner, addr: str, mailbox_id: int, uids: list[int]) -> None:
    name, modseq = p.conn.execute(
        "SELECT name, modseq FROM mailboxes WHERE id=?", (mailbox_id,)
    ).fetchone()
    p.emit({"t": "expunge", "m": mailbox_id, "u": uids, "ms": modseq + 1})
    p.event(addr, name, "expunge", uids)


def store_copies(
    p: Planner, addrs: Sequence[str], data: bytes, push: dict[str, str] | None = None
) -> dict[str, tuple[int, int]]:
    """Insert data into the INBOX of each addr (room already made); the body is logged once
    and every further copy points at it. `push`: the token keys to notify, per addr.
    Returns (mailbox id, uid) per addr."""
    loc = None
    date = int(p.now)
    placed = {}
    header = header_section(data)
    for addr in addrs:
        mbx = p.mailbox(addr, "INBOX")  # read now: room-making may have changed it
        keys = (push or {}).get(addr, "")
        uid, loc = _insert(p, mbx, frozenset(), date, body=data if loc is None else None,
                           loc=loc, push=keys, header=header)  # fmt: skip
        placed[addr] = (mbx.id, uid)
    return placed


def append(
    p: Planner, addr: str, mailbox: str, data: bytes, flags: Iterable[str], date: int | None
) -> tuple[int, int]:
    mbx = p.mailbox(addr, mailbox)
    make_room(p, addr, len(data))
    mbx = p.mailbox(addr, mailbox)
    uid, _ = _insert(
        p,
        mbx,
        normalize_flags(flags),
        int(p.now) if date is None else date,
        body=data,
        header=header_section(data),
    )
    return mbx.uidvalidity, uid


def set_flags(
    p: Planner, addr: str, mailbox: str, uids: Sequence[int], flags: Iterable[str], mode: FlagMode
) -> list[MessageMeta]:
    mbx = p.mailbox(addr, mailbox)
    wanted = normalize_flags(flags)
    changes: list[list[object]] = []
    rows = _rows(p, mbx.id, uids)
    for uid, old_text, *_ in rows:
        old = decode_flags(old_text)
        new = {"add": old | wanted, "remove": old - wanted, "replace": wanted}[mode]
        if new != old:
            changes.append([uid, encode_flags(new)])
    if changes:
        p.emit({"t": "flags", "m": mbx.id, "ms": mbx.modseq + 1, "c": changes})
        p.event(addr, mbx.name, "flags", [c[0] for c in changes])  # type: ignore[misc]
    return [message_meta(r) for r in _rows(p, mbx.id, uids)]


def expunge(p: Planner, addr: str, mailbox: str, uids: Sequence[int] | None) -> list[int]:
    mbx = p.mailbox(addr, mailbox)
    if uids is None:
        found = p.conn.execute(
            "SELECT uid FROM messages WHERE mailbox=? AND ' ' || flags || ' ' LIKE '% \\Deleted %'"
            " ORDER BY uid",
            (mbx.id,),
        )
        gone = [r[0] for r in found]
    else:
        gone = [r[0] for r in _rows(p, mbx.id, uids)]
    if gone:
        expunge_ids(p, addr, mbx.id, gone)
    return gone


def copy(
    p: Planner, addr: str, src: str, uids: Sequence[int], dst: str, *, move: bool = False
) -> list[tuple[int, int]]:
    """COPY (or MOVE): new uids in dst pointing at the same logged bodies; no body is rewritten."""
    source = p.mailbox(addr, src)
    target = p.mailbox(addr, dst)
    if move and source.id == target.id:
        raise MailboxError("cannot move a message to the mailbox it is in")
    pairs = []
    for uid, flags, seg, off, size, date in _select(
        p, "uid, flags, seg, off, size, date", source.id, uids
    ):
        new_uid, _ = _insert(p, target, decode_flags(flags), date, loc=Location(seg, off, size))
        pairs.append((uid, new_uid))
    if move and pairs:
        expunge_ids(p, addr, source.id, [a for a, _ in pairs])
    return pairs


def _rows(p: Planner, mailbox_id: int, uids: Sequence[int]) -> list[tuple[int, str, int, int, int]]:
    """(uid, flags, size, date, modseq) of the existing messages among uids, sorted by uid."""
    return _select(p, "uid, flags, size, date, modseq", mailbox_id, uids)


def _select(p: Planner, columns: str, mailbox_id: int, uids: Sequence[int]) -> list[Any]:
    """Rows of the existing messages among uids (a bounded number of SQL parameters per query)."""
    wanted = sorted(set(uids))
    out: list[Any] = []
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        marks = ",".join("?" * len(chunk))
        out += p.conn.execute(
            f"SELECT {columns} FROM messages WHERE mailbox=? AND uid IN ({marks}) ORDER BY uid",
            (mailbox_id, *chunk),
        ).fetchall()
    return out


# -- mailboxes ------------------------------------------------------------------------------


def create_mailbox(p: Planner, addr: str, name: str, *, subscribed: bool = True) -> None:
    p.require_account(addr)
    name = canonical_name(name)
    if not name or p.find_mailbox(addr, name):
        raise MailboxError(f"mailbox already exists: {name}")
    p.emit(
        {
            "t": "mbx",
            "a": addr,
            "id": p.next_mailbox_id(),
            "n": name,
            "v": p.next_uidvalidity(),
            "s": int(subscribed),
            "su": rules.special_use(name),
        }
    )


def delete_mailbox(p: Planner, addr: str, name: str) -> None:
    if canonical_name(name) == "INBOX":
        raise MailboxError("INBOX cannot be deleted")
    mbx = p.mailbox(addr, name)
    p.emit({"t": "mbx_del", "id": mbx.id})


def rename_mailbox(p: Planner, addr: str, old: str, new: str) -> None:
    if canonical_name(old) == "INBOX":
        raise MailboxError("renaming INBOX is not supported")
    mbx = p.mailbox(addr, old)
    new = canonical_name(new)
    if not new or p.find_mailbox(addr, new):
        raise MailboxError(f"mailbox already exists: {new}")
    p.emit({"t": "mbx_ren", "id": mbx.id, "n": new})


def subscribe(p: Planner, addr: str, name: str, on: bool) -> None:
    mbx = p.mailbox(addr, name)
    if mbx.subscribed != on:
        p.emit({"t": "mbx_sub", "id": mbx.id, "on": int(on)})
