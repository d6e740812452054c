"""FETCH and UID FETCH."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

import trio

from relay import mime
from relay.store import MessageMeta, NoSuchMessage

from . import message_parts, respond
from .commands import Command, Fetch, HandlerTable
from .errors import Bad
from .fetchspec import FetchAtt
from .grammar import MONTHS
from .respond import Atom, Literal

if TYPE_CHECKING:
    from .session import Session

# Attributes answered from the index alone; anything else needs the message bytes.
_META_ONLY = frozenset({"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"})


def _needs_mime_walk(att: FetchAtt) -> bool:
    """Whether answering `att` walks the MIME structure or parses a header (work that hostile
    bytes can make long, so it runs in a worker thread, not on the event loop)."""
    if att.section is not None:
        return not message_parts.is_plain_section(att.section)
    return att.name in ("ENVELOPE", "BODY", "BODYSTRUCTURE")


async def cmd_fetch(s: Session, cmd: Command) -> str:
    request: Fetch = cmd.args[0]
    selected = s.selected
    assert selected is not None
    if not cmd.uid and not selected.seq_range_valid(request.seqset):
        raise Bad("Invalid messageset")
    atts = list(request.atts)
    if cmd.uid and not any(a.name == "UID" for a in atts):
        atts.insert(0, FetchAtt("UID"))  # RFC 3501 §6.4.8: UID FETCH always returns the UID
    if request.changedsince is not None or any(a.name == "MODSEQ" for a in atts):
        s.condstore = selected.condstore = True  # RFC 7162 §3.1: these enable CONDSTORE
    if request.changedsince is not None and not any(a.name == "MODSEQ" for a in atts):
        atts.append(FetchAtt("MODSEQ"))
    uids = selected.resolve(request.seqset, uid=cmd.uid)
    if not uids:
        return "Fetch completed."
    snap = await s.store.snapshot(s.addr, selected.name)
    metas = {m.uid: m for m in snap.messages}
    if not selected.readonly and any(a.sets_seen for a in atts):
        unseen = [u for u in uids if u in metas and "\\Seen" not in metas[u].flags]
        if unseen:
            changed = await s.store.set_flags(s.addr, selected.name, unseen, {"\\Seen"}, "add")
            selected.note_own_flags(changed)
            for meta in changed:
                metas[meta.uid] = meta
            if not any(a.name == "FLAGS" for a in atts):
                atts.append(FetchAtt("FLAGS"))  # the flags changed, so they are reported
    needs_content = any(a.name not in _META_ONLY for a in atts)
    in_thread = any(_needs_mime_walk(a) for a in atts)
    for uid in uids:
        meta = metas.get(uid)
        seq = selected.seq_of(uid)
        if meta is None or seq is None:
            continue  # expunged by another session meanwhile
        if request.changedsince is not None and meta.modseq <= request.changedsince:
            continue
        data = None
        if needs_content:
            try:
                data = await s.store.read(s.addr, selected.name, uid)
            except NoSuchMessage:
                continue
        if in_thread:
            line = await trio.to_thread.run_sync(
                fetch_response, seq, atts, meta, data, limiter=s.app.cpu_work
            )
        else:
            line = fetch_response(seq, atts, meta, data)
        s.send(line)
        await s.maybe_flush()
    return "Fetch completed."


def fetch_response(seq: int, atts: list[FetchAtt], meta: MessageMeta, data: bytes | None) -> bytes:
    """The untagged FETCH line for one message."""
    return respond.untagged(seq, Atom("FETCH"), fetch_items(atts, meta, data))


def fetch_items(atts: list[FetchAtt], meta: MessageMeta, data: bytes | None) -> list:
    items: list = []
    parsed: mime.Entity | None = None
    for att in atts:
        name = att.name
        if att.section is not None:
            if not message_parts.is_plain_section(att.section):
                parsed = parsed or mime.parse(data or b"")  # once per message, for all parts
            section = message_parts.section_bytes(data or b"", att.section, parsed)
            if att.partial is not None:
                start, length = att.partial
                section = section[start : start + length]
            value: object = Literal(section)
        elif name == "UID":
            value = meta.uid
        elif name == "FLAGS":
            value = respond.flag_list(meta.flags)
        elif name == "INTERNALDATE":
            value = format_internal_date(meta)
        elif name == "RFC822.SIZE":
            value = meta.size
        elif name == "MODSEQ":
            value = (meta.modseq,)
        elif name == "RFC822":
            value = Literal(data or b"")
        elif name in ("RFC822.HEADER", "RFC822.TEXT"):
            offset = mime.split_header(data or b"")
            value = Literal(
                (data or b"")[:offset] if name == "RFC822.HEADER" else (data or b"")[offset:]
            )
        elif name == "ENVELOPE":  # the header alone: the body is not parsed for it
            value = message_parts.envelope(mime.parse_header(data or b""))
        else:
            parsed = parsed or mime.parse(data or b"")
            value = message_parts.bodystructure(parsed, extended=name == "BODYSTRUCTURE")
        items += [Atom(att.response_name()), value]
    return items


def format_internal_date(meta: MessageMeta) -> str:
    d = meta.internal_date.astimezone(UTC)
    return f"{d.day:02d}-{MONTHS[d.month - 1]}-{d.year:04d} {d:%H:%M:%S} +0000"


HANDLERS: HandlerTable = {"FETCH": ("selected", cmd_fetch)}
