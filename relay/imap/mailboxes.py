"""Mailbox commands: SELECT/EXAMINE, LIST/LSUB, STATUS, CREATE/DELETE/RENAME,
(UN)SUBSCRIBE, APPEND, NAMESPACE."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from relay.store import MailboxError, NoSuchMailbox, QuotaExceeded, StorageFull

from . import respond
from .commands import Append, Command, HandlerTable
from .errors import No
from .respond import Atom
from .selected import SelectedMailbox

if TYPE_CHECKING:
    from .session import Session

DELIMITER = "/"
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def mailbox_name(name: str) -> Atom | str:
    """Mailbox names go out as atoms when they can (the anchor's METADATA test expects
    `* METADATA INBOX (...)`), else quoted or as a literal."""
    if name and all(c.isascii() and c.isprintable() and c not in ' (){%*"\\]' for c in name):
        return Atom(name)
    return name


async def cmd_select(s: Session, cmd: Command) -> tuple[str, str]:
    name, params = cmd.args
    readonly = cmd.name == "EXAMINE"
    s.selected = None  # a failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1)
    try:
        snap = await s.store.snapshot(s.addr, name)
    except MailboxError as e:
        raise No(e.message or "Mailbox doesn't exist: " + name, "NONEXISTENT") from None
    selected = SelectedMailbox(name, snap, readonly=readonly)
    if "CONDSTORE" in params:
        s.condstore = True
    selected.condstore = s.condstore
    s.selected = selected
    s.send(respond.untagged(Atom("FLAGS"), tuple(Atom(f) for f in SYSTEM_FLAGS)))
    permanent = "()" if readonly else "(" + " ".join(SYSTEM_FLAGS) + " \\*)"
    s.send(respond.status("OK", "Flags permitted.", f"PERMANENTFLAGS {permanent}"))
    s.send(respond.untagged(selected.exists, Atom("EXISTS")))
    s.send(respond.untagged(0, Atom("RECENT")))
    first_unseen = next(
        (i + 1 for i, m in enumerate(snap.messages) if "\\Seen" not in m.flags), None
    )
    if first_unseen is not None:
        s.send(respond.status("OK", "First unseen.", f"UNSEEN {first_unseen}"))
    s.send(respond.status("OK", "UIDs valid", f"UIDVALIDITY {snap.uidvalidity}"))
    s.send(respond.status("OK", "Predicted next UID", f"UIDNEXT {snap.uidnext}"))
    s.send(respond.status("OK", "Highest", f"HIGHESTMODSEQ {snap.highestmodseq}"))
    mode = "READ-ONLY" if readonly else "READ-WRITE"
    return mode, ("Examine" if readonly else "Select") + " completed."


async def cmd_list(s: Session, cmd: Command) -> str:
    reference, pattern = cmd.args
    if pattern == "":
        # RFC 3501: an empty pattern asks for the hierarchy delimiter and root.
        s.send(respond.untagged(Atom("LIST"), (Atom("\\Noselect"),), DELIMITER, ""))
        return "List completed."
    matcher = _pattern(reference + pattern)
    entries = await s.store.list_mailboxes(s.addr)
    names = {e.name for e in entries}
    for entry in entries:
        if cmd.name == "LSUB" and not entry.subscribed:
            continue
        if not matcher.fullmatch(entry.name):
            continue
        has_children = any(n.startswith(entry.name + DELIMITER) for n in names)
        attrs = [Atom("\\HasChildren" if has_children else "\\HasNoChildren")]
        if entry.special_use:
            attrs.append(Atom(entry.special_use))
        if cmd.name == "LIST" and entry.subscribed:
            attrs.append(Atom("\\Subscribed"))
        s.send(respond.untagged(Atom(cmd.name), tuple(attrs), DELIMITER, mailbox_name(entry.name)))
    return ("List" if cmd.name == "LIST" else "Lsub") + " completed."


def _pattern(pattern: str) -> re.Pattern[str]:
    parts = []
    for c in pattern:
        if c == "*":
            parts.append(".*")
        elif c == "%":
            parts.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            parts.append(re.escape(c))
    regex = "".join(parts)
    # INBOX matches case-insensitively; everything else exactly.
    if pattern.upper().startswith("INBOX"):
        regex = "(?i:INBOX)" + regex[len("INBOX") :]
    return re.compile(regex)


async def cmd_status(s: Session, cmd: Command) -> str:
    name, items = cmd.args
    try:
        snap = await s.store.snapshot(s.addr, name)
    except MailboxError as e:
        raise No(e.message, "NONEXISTENT") from None
    values = {
        "MESSAGES": len(snap.messages),
        "RECENT": 0,
        "UIDNEXT": snap.uidnext,
        "UIDVALIDITY": snap.uidvalidity,
        "UNSEEN": sum(1 for m in snap.messages if "\\Seen" not in m.flags),
        "HIGHESTMODSEQ": snap.highestmodseq,
        "SIZE": sum(m.size for m in snap.messages),
    }
    out: list = []
    for item in items:
        if item not in values:
            raise No(f"Unknown STATUS item {item}")
        out += [Atom(item), values[item]]
    s.send(respond.untagged(Atom("STATUS"), mailbox_name(name), out))
    return "Status completed."


async def cmd_create(s: Session, cmd: Command) -> str:
    name = cmd.args[0].rstrip(DELIMITER)
    if not name or name == "INBOX":
        raise No("Mailbox already exists", "ALREADYEXISTS")
    await _mailbox_op(s.store.create_mailbox(s.addr, name))
    return "Create completed."


async def cmd_delete(s: Session, cmd: Command) -> str:
    name = cmd.args[0]
    if name == "INBOX":
        raise No("INBOX can't be deleted.")
    await _mailbox_op(s.store.delete_mailbox(s.addr, name))
    if s.selected is not None and s.selected.name == name:
        s.selected = None
    return "Delete completed."


async def cmd_rename(s: Session, cmd: Command) -> str:
    old, new = cmd.args
    await _mailbox_op(s.store.rename_mailbox(s.addr, old, new.rstrip(DELIMITER)))
    return "Rename completed."


async def cmd_subscribe(s: Session, cmd: Command) -> str:
    on = cmd.name == "SUBSCRIBE"
    await _mailbox_op(s.store.subscribe(s.addr, cmd.args[0], on))
    return ("Subscribe" if on else "Unsubscribe") + " completed."


async def _mailbox_op(awaitable) -> None:  # noqa: ANN001 - any store coroutine
    try:
        await awaitable
    except NoSuchMailbox as e:
        raise No(e.message, "NONEXISTENT") from None
    except MailboxError as e:
        raise No(e.message) from None


async def cmd_append(s: Session, cmd: Command) -> tuple[str, str]:
    append: Append = cmd.args[0]
    flags = tuple(f for f in append.flags if f.lower() != "\\recent")
    try:
        uidvalidity, uid = await s.store.append(
            s.addr, append.mailbox, append.message, flags=flags, internal_date=append.date
        )
    except NoSuchMailbox as e:
        raise No(e.message, "TRYCREATE") from None
    except QuotaExceeded:
        raise No("Quota exceeded (mailbox for user is full)", "OVERQUOTA") from None
    except StorageFull:  # as Dovecot answers a full disk
        raise No("Insufficient system storage, try again later.", "OVERQUOTA") from None
    except MailboxError as e:
        raise No(e.message) from None
    if s.selected is not None and s.selected.name == append.mailbox:
        await s.refresh_selected()
    return f"APPENDUID {uidvalidity} {uid}", "Append completed."


async def cmd_namespace(s: Session, cmd: Command) -> str:
    s.send(respond.untagged(Atom("NAMESPACE"), (("", DELIMITER),), None, None))
    return "Namespace completed."


HANDLERS: HandlerTable = {
    "SELECT": ("auth", cmd_select),
    "EXAMINE": ("auth", cmd_select),
    "LIST": ("auth", cmd_list),
    "LSUB": ("auth", cmd_list),
    "STATUS": ("auth", cmd_status),
    "CREATE": ("auth", cmd_create),
    "DELETE": ("auth", cmd_delete),
    "RENAME": ("auth", cmd_rename),
    "SUBSCRIBE": ("auth", cmd_subscribe),
    "UNSUBSCRIBE": ("auth", cmd_subscribe),
    "APPEND": ("auth", cmd_append),
    "NAMESPACE": ("auth", cmd_namespace),
}
