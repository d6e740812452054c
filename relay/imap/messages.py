"""Commands on messages of the selected mailbox: STORE, SEARCH, COPY, MOVE, EXPUNGE, and
the ways out of the selected state: CLOSE, UNSELECT (plus CHECK)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import trio

from relay.store import MailboxError, NoSuchMailbox, NoSuchMessage, QuotaExceeded

from . import message_parts, respond
from .commands import Command, HandlerTable, Search, Store
from .errors import Bad, No
from .respond import Atom
from .searchkeys import Candidate, Key, matches, needs_content, uses_modseq
from .seqset import SeqSet, from_values

if TYPE_CHECKING:
    from .selected import SelectedMailbox
    from .session import Session

_SEARCH_CHARSETS = frozenset({"UTF-8", "US-ASCII"})


def _selected(s: Session, cmd: Command, seqset: SeqSet) -> tuple[SelectedMailbox, list[int]]:
    selected = s.selected
    assert selected is not None
    if not cmd.uid and not selected.seq_range_valid(seqset):
        raise Bad("Invalid messageset")
    return selected, selected.resolve(seqset, uid=cmd.uid)


async def cmd_store(s: Session, cmd: Command) -> str | tuple[str, str]:
    request: Store = cmd.args[0]
    selected, uids = _selected(s, cmd, request.seqset)
    if selected.readonly:
        raise No("Mailbox is open read-only.")
    flags = {f for f in request.flags if f.lower() != "\\recent"}
    modified: list[int] = []
    if request.unchangedsince is not None:
        s.condstore = selected.condstore = True
        snap = await s.store.snapshot(s.addr, selected.name)
        changed_since = {m.uid for m in snap.messages if m.modseq > request.unchangedsince}
        modified = [u for u in uids if u in changed_since]
        uids = [u for u in uids if u not in changed_since]
    metas = (
        await s.store.set_flags(s.addr, selected.name, uids, flags, request.mode) if uids else []
    )
    selected.note_own_flags(metas)
    for meta in metas:
        seq = selected.seq_of(meta.uid)
        if seq is not None and (not request.silent or request.unchangedsince is not None):
            s.send(selected.flags_response(seq, meta, uid=cmd.uid))
    if modified:
        numbers = modified if cmd.uid else [selected.seq_of(u) or 0 for u in modified]
        return f"MODIFIED {from_values(sorted(numbers)).format()}", "Conditional STORE failed."
    return "Store completed."


async def cmd_search(s: Session, cmd: Command) -> str:
    request: Search = cmd.args[0]
    if request.charset is not None and request.charset not in _SEARCH_CHARSETS:
        raise No("Unsupported charset.", "BADCHARSET (UTF-8 US-ASCII)")
    selected = s.selected
    assert selected is not None
    snap = await s.store.snapshot(s.addr, selected.name)
    want_content = needs_content(request.key)
    found: list[int] = []
    highest = 0
    largest_uid = selected.uids[-1] if selected.uids else 0
    for meta in snap.messages:
        seq = selected.seq_of(meta.uid)
        if seq is None:
            continue  # new mail this session has not announced yet is not searchable
        candidate = Candidate(
            seq=seq,
            uid=meta.uid,
            flags=meta.flags,
            size=meta.size,
            internal_date=meta.internal_date,
            modseq=meta.modseq,
            largest_seq=selected.exists,
            largest_uid=largest_uid,
        )
        if want_content:
            try:
                data = await s.store.read(s.addr, selected.name, meta.uid)
            except NoSuchMessage:
                continue
            hit = await trio.to_thread.run_sync(
                _matches_text, request.key, candidate, data, limiter=s.app.cpu_work
            )
        else:
            hit = matches(request.key, candidate)
        if hit:
            found.append(meta.uid if cmd.uid else seq)
            highest = max(highest, meta.modseq)
    items: list = [Atom("SEARCH"), *found]
    if uses_modseq(request.key) and found:
        items.append((Atom("MODSEQ"), highest))
    s.send(respond.untagged(*items))
    return "Search completed."


async def cmd_copy(s: Session, cmd: Command) -> str | tuple[str, str]:
    seqset, target = cmd.args
    selected, uids = _selected(s, cmd, seqset)
    moving = cmd.name == "MOVE"
    if moving and selected.readonly:
        raise No("Mailbox is open read-only.")
    if not uids:
        return "No messages found." if moving else "Copy completed."
    operation = s.store.move if moving else s.store.copy
    try:
        pairs = await operation(s.addr, selected.name, uids, target)
        target_validity = (await s.store.snapshot(s.addr, target)).uidvalidity
    except NoSuchMailbox as e:
        raise No(e.message or "Mailbox doesn't exist: " + target, "TRYCREATE") from None
    except QuotaExceeded:
        raise No("Quota exceeded (mailbox for user is full)", "OVERQUOTA") from None
    except MailboxError as e:
        raise No(e.message) from None
    pairs = sorted(pairs)
    code = (
        f"COPYUID {target_validity} {from_values([a for a, _ in pairs]).format()} "
        f"{from_values([b for _, b in pairs]).format()}"
        if pairs
        else None
    )
    if target == selected.name:
        await s.refresh_selected()
    if not moving:
        return (code, "Copy completed.") if code else "Copy completed."
    # RFC 6851: COPYUID goes in an untagged OK, before the EXPUNGEs.
    if code:
        s.send(respond.status("OK", "Moved UIDs.", code))
    for line in selected.forget([a for a, _ in pairs]):
        s.send(line)
    return "Move completed."


async def cmd_expunge(s: Session, cmd: Command) -> str:
    selected = s.selected
    assert selected is not None
    if cmd.args and not cmd.uid:
        raise Bad("EXPUNGE takes no arguments.")
    if selected.readonly:
        raise No("Mailbox is open read-only.")
    await _expunge(s, selected, cmd.args[0] if cmd.args else None)
    return "Expunge completed."


async def _expunge(s: Session, selected: SelectedMailbox, seqset: SeqSet | None) -> list[int]:
    snap = await s.store.snapshot(s.addr, selected.name)
    deleted = [m.uid for m in snap.messages if "\\Deleted" in m.flags]
    if seqset is not None:
        largest = selected.uids[-1] if selected.uids else 0
        deleted = [u for u in deleted if seqset.contains(u, largest)]
    if not deleted:
        return []
    gone = await s.store.expunge(s.addr, selected.name, deleted)
    for line in selected.forget(gone):
        s.send(line)
    return gone


async def cmd_close(s: Session, cmd: Command) -> str:
    selected = s.selected
    assert selected is not None
    if not selected.readonly:
        # CLOSE expunges silently (RFC 3501 §6.4.2): the responses are dropped.
        snap = await s.store.snapshot(s.addr, selected.name)
        deleted = [m.uid for m in snap.messages if "\\Deleted" in m.flags]
        if deleted:
            await s.store.expunge(s.addr, selected.name, deleted)
    s.selected = None
    return "Close completed."


async def cmd_unselect(s: Session, cmd: Command) -> str:
    s.selected = None
    return "Unselect completed."


async def cmd_check(s: Session, cmd: Command) -> str:
    return "Check completed."


HANDLERS: HandlerTable = {
    "STORE": ("selected", cmd_store),
    "SEARCH": ("selected", cmd_search),
    "COPY": ("selected", cmd_copy),
    "MOVE": ("selected", cmd_copy),
    "EXPUNGE": ("selected", cmd_expunge),
    "CLOSE": ("selected", cmd_close),
    "UNSELECT": ("selected", cmd_unselect),
    "CHECK": ("selected", cmd_check),
}


def _matches_text(key: Key, candidate: Candidate, data: bytes) -> bool:
    """Evaluate a key that looks into the message (in a worker thread: the text can be large)."""
    text = message_parts.message_text(data)
    return matches(key, replace(candidate, content=lambda: text))
