"""Every WebIMAP action, once: the WebSocket dispatches them by name, REST routes call them.

An action takes the logged-in caller and the request's `data` object and returns the JSON
result, or raises `ActionError(status, message)`: the message is madmail's error string (a
WebSocket client sees it as the error's data, a REST client as {"error": message}); the status
is what REST answers. Mailbox and message operations are the store's own, the ones IMAP
SELECT/STORE/EXPUNGE/COPY/MOVE/CREATE/DELETE/RENAME use, so both protocols see one mailbox.
Sending is the core's submit(): the PGP gate, sender rules, rate limits and refusal texts of
SMTP submission.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from relay.core import inbound, submission
from relay.reply import Reply
from relay.store import (
    MailboxError,
    MailboxSnapshot,
    MessageMeta,
    NoSuchAccount,
    NoSuchMailbox,
    NoSuchMessage,
    QuotaExceeded,
    StorageFull,
)

from . import views

if TYPE_CHECKING:
    from relay.app import App

Json = Any
INLINE_SUMMARIES = 8  # more than this many envelopes are parsed in a worker thread
# An IMAP flag: an atom, or a system flag with its backslash (RFC 3501 flag-keyword / flag).
_FLAG = re.compile(r"\\?[!#$&'+\-.0-9:;<=>?@A-Z\[^_`a-z|~]+")
_LINE_END = re.compile(rb"\r?\n")


class ActionError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Caller:
    app: App
    addr: str  # the logged-in account, lower case


Action = Callable[[Caller, dict[str, Any]], Awaitable[Json]]


# -- reading ------------------------------------------------------------------------------


async def list_mailboxes(c: Caller, data: dict[str, Any]) -> Json:
    store = c.app.store
    entries = await store.list_mailboxes(c.addr)
    names = {e.name for e in entries}
    out = []
    for entry in entries:
        try:
            snap = await store.snapshot(c.addr, entry.name)
        except MailboxError:  # deleted meanwhile
            continue
        out.append(views.mailbox_info(entry, names, snap))
    return out


async def list_messages(c: Caller, data: dict[str, Any]) -> Json:
    return await summaries_since(c, _mailbox(data), _uint(data, "since_uid", "list_messages"))


async def summaries_since(
    c: Caller, mailbox: str, since_uid: int, likely: tuple[int, ...] = ()
) -> list[Json]:
    """The summaries of every message with a uid above `since_uid`, oldest first. `likely`:
    uids a change notification named, read while the mailbox is listed (a push then waits for
    one database round trip instead of two in a row)."""
    bodies: dict[int, bytes] = {}

    async def prefetch(uid: int) -> None:
        with contextlib.suppress(NoSuchMessage, MailboxError):
            bodies[uid] = await c.app.store.read(c.addr, mailbox, uid)

    failed: ActionError | None = None
    async with trio.open_nursery() as nursery:
        for uid in likely:
            if uid > since_uid:
                nursery.start_soon(prefetch, uid)
        if likely:
            # Let the reads ask the database first (where the message is): the listing then
            # runs while the message itself is read from its segment, two hops instead of three.
            await trio.sleep(0)
        try:
            snap = await _snapshot(c, mailbox)
        except ActionError as e:  # raised outside the nursery: not as an exception group
            failed = e
    if failed is not None:
        raise failed
    wanted = [(seq, m) for seq, m in enumerate(snap.messages, 1) if m.uid > since_uid]
    return await _summaries(c, mailbox, wanted, bodies)


async def fetch(c: Caller, data: dict[str, Any]) -> Json:
    mailbox = _mailbox(data)
    seq, meta = await _find(c, mailbox, _uid(data, "fetch"))
    body = await _read(c, mailbox, meta.uid)
    if len(body) > 64 * 1024:
        return await trio.to_thread.run_sync(views.detail, meta, seq, body, limiter=c.app.cpu_work)
    return views.detail(meta, seq, body)


async def search(c: Caller, data: dict[str, Any]) -> Json:
    query = data.get("query")
    if not isinstance(query, str) or not query:
        raise ActionError(400, "query is required")
    found = await summaries_since(c, _mailbox(data), 0)
    needle = query.lower()
    return [s for s in found if needle in views.search_text(s)]


# -- changing messages --------------------------------------------------------------------

_FLAG_MODES = {"add": "add", "remove": "remove", "set": "replace"}


async def flags(c: Caller, data: dict[str, Any]) -> Json:
    mode = _FLAG_MODES.get(data.get("op"))  # type: ignore[arg-type]
    if mode is None:
        raise ActionError(400, "invalid op: must be add, remove, or set")
    wanted = data.get("flags", [])
    if not isinstance(wanted, list) or not all(isinstance(f, str) for f in wanted):
        raise ActionError(400, "invalid flags payload: flags must be a list of strings")
    for flag in wanted:
        if not _FLAG.fullmatch(flag):
            raise ActionError(400, f"invalid flag: {flag[:100]}")
    mailbox, uid = _mailbox(data), _uid(data, "flags")
    try:
        changed = await c.app.store.set_flags(c.addr, mailbox, [uid], wanted, mode)  # type: ignore[arg-type]
    except MailboxError as e:
        raise _mailbox_error(e) from None
    if not changed:
        raise ActionError(404, "message not found")
    return {"status": "ok"}


async def delete(c: Caller, data: dict[str, Any]) -> Json:
    mailbox, uid = _mailbox(data), _uid(data, "delete")
    try:
        gone = await c.app.store.expunge(c.addr, mailbox, [uid])
    except MailboxError as e:
        raise _mailbox_error(e) from None
    if not gone:
        raise ActionError(404, "message not found")
    return {"status": "deleted"}


async def move(c: Caller, data: dict[str, Any]) -> Json:
    return await _transfer(c, data, moving=True)


async def copy(c: Caller, data: dict[str, Any]) -> Json:
    return await _transfer(c, data, moving=False)


async def _transfer(c: Caller, data: dict[str, Any], *, moving: bool) -> Json:
    name = "move" if moving else "copy"
    dest = data.get("dest_mailbox")
    if not isinstance(dest, str) or not dest:
        raise ActionError(400, "dest_mailbox is required")
    mailbox, uid = _mailbox(data), _uid(data, name)
    operation = c.app.store.move if moving else c.app.store.copy
    try:
        pairs = await operation(c.addr, mailbox, [uid], dest)
    except QuotaExceeded:
        raise ActionError(507, "quota exceeded (mailbox for user is full)") from None
    except StorageFull:
        raise ActionError(503, "insufficient system storage, try again later") from None
    except MailboxError as e:
        raise _mailbox_error(e) from None
    if not pairs:
        raise ActionError(404, "message not found")
    return {"status": "moved" if moving else "copied"}


# -- mailboxes ----------------------------------------------------------------------------


async def create_mailbox(c: Caller, data: dict[str, Any]) -> Json:
    name = _name(data, "name").rstrip(views.DELIMITER)
    await _mailbox_op(c.app.store.create_mailbox(c.addr, name), "create")
    return {"status": "created"}


async def delete_mailbox(c: Caller, data: dict[str, Any]) -> Json:
    await _mailbox_op(c.app.store.delete_mailbox(c.addr, _name(data, "name")), "delete")
    return {"status": "deleted"}


async def rename_mailbox(c: Caller, data: dict[str, Any]) -> Json:
    old, new = data.get("old_name"), data.get("new_name")
    if not (isinstance(old, str) and old and isinstance(new, str) and new):
        raise ActionError(400, "old_name and new_name are required")
    await _mailbox_op(c.app.store.rename_mailbox(c.addr, old, new.rstrip("/")), "rename")
    return {"status": "renamed"}


async def _mailbox_op(operation: Awaitable[None], verb: str) -> None:
    try:
        await operation
    except StorageFull:
        raise ActionError(503, "insufficient system storage, try again later") from None
    except MailboxError as e:
        status = 404 if isinstance(e, NoSuchMailbox) else 400
        raise ActionError(status, f"failed to {verb} mailbox: {e.message}") from None


# -- sending ------------------------------------------------------------------------------


async def send(c: Caller, data: dict[str, Any]) -> Json:
    app = c.app
    if not app.config.webimap.send:
        raise ActionError(404, "send is not enabled")
    recipients = data.get("to")
    if not recipients:
        raise ActionError(400, "missing recipients")
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise ActionError(400, "invalid send payload: to must be a list of addresses")
    sender = data.get("from") or c.addr
    if not isinstance(sender, str) or not (sender.isascii() and sender.lower() == c.addr):
        raise ActionError(403, "sender must match authenticated user")
    body = data.get("body")
    if not isinstance(body, str) or not body:
        raise ActionError(400, "invalid send payload: body must be the message as a string")
    # The message as SMTP would carry it: CRLF line ends (a browser's textarea sends LF).
    content = _LINE_END.sub(b"\r\n", body.encode("utf-8", "surrogateescape"))
    limits = app.config.limits
    if len(content) > limits.max_message_size:
        raise ActionError(413, "message exceeds maximum size")
    if len(recipients) > limits.max_recipients:
        raise ActionError(400, "too many recipients")
    for rcpt in recipients:
        refusal = None if inbound.is_mailbox(rcpt) else inbound.BAD_RECIPIENT
        if refusal is None and app.config.is_local_address(rcpt):
            refusal = await inbound.unknown_recipient(app, rcpt)
        if refusal is not None:
            raise _refused(refusal)
    refusal = submission.envelope_refusal(app, c.addr, sender)
    if refusal is not None:
        raise _refused(refusal)
    outcome = await submission.submit(app, sender, list(recipients), content)
    if not outcome.reply.accepted:
        raise _refused(outcome.reply)
    return {"status": "sent"}


def _refused(reply: Reply) -> ActionError:
    """A submission refusal with its text as SMTP sends it ("Encryption Needed: ...")."""
    if reply.code == 450:  # the sender's rate
        status = 429
    elif reply.code == 552:
        status = 413
    elif reply.code >= 500:
        status = 400
    else:  # storage full or failing: try again later
        status = 503
    return ActionError(status, reply.text.lstrip(": "))


ACTIONS: dict[str, Action] = {
    "send": send,
    "fetch": fetch,
    "list_mailboxes": list_mailboxes,
    "list_messages": list_messages,
    "flags": flags,
    "delete": delete,
    "move": move,
    "copy": copy,
    "search": search,
    "create_mailbox": create_mailbox,
    "delete_mailbox": delete_mailbox,
    "rename_mailbox": rename_mailbox,
}


async def run(c: Caller, action: str, data: Any) -> Json:
    """Dispatch by name (the WebSocket's way in); raises ActionError."""
    handler = ACTIONS.get(action)
    if handler is None:
        raise ActionError(400, f"unknown action: {action}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ActionError(400, f"invalid {action} payload: data must be an object")
    return await handler(c, data)


# -- helpers ------------------------------------------------------------------------------


def _mailbox(data: dict[str, Any]) -> str:
    mailbox = data.get("mailbox") or "INBOX"
    if not isinstance(mailbox, str):
        raise ActionError(400, "invalid payload: mailbox must be a string")
    return mailbox


def _name(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ActionError(400, f"{key} is required")
    return value


def _uint(data: dict[str, Any], key: str, action: str) -> int:
    value = data.get(key, 0) or 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ActionError(400, f"invalid {action} payload: {key} must be a number")
    return value


def _uid(data: dict[str, Any], action: str) -> int:
    uid = _uint(data, "uid", action)
    if uid == 0:
        raise ActionError(404, "message not found")
    return uid


def _mailbox_error(e: MailboxError) -> ActionError:
    if isinstance(e, NoSuchMailbox):
        return ActionError(404, e.message)
    return ActionError(400, e.message)


async def snapshot(c: Caller, mailbox: str) -> MailboxSnapshot:
    return await _snapshot(c, mailbox)


async def summaries_of(
    c: Caller, mailbox: str, wanted: list[tuple[int, MessageMeta]]
) -> list[Json]:
    """The summaries of these (sequence number, message) of a snapshot."""
    return await _summaries(c, mailbox, wanted)


async def _snapshot(c: Caller, mailbox: str) -> MailboxSnapshot:
    try:
        return await c.app.store.snapshot(c.addr, mailbox)
    except NoSuchAccount:  # deleted while logged in
        raise ActionError(401, "authentication failed") from None
    except MailboxError as e:
        raise _mailbox_error(e) from None


async def _find(c: Caller, mailbox: str, uid: int) -> tuple[int, MessageMeta]:
    snap = await _snapshot(c, mailbox)
    for seq, meta in enumerate(snap.messages, 1):
        if meta.uid == uid:
            return seq, meta
    raise ActionError(404, "message not found")


async def _read(c: Caller, mailbox: str, uid: int) -> bytes:
    try:
        return await c.app.store.read(c.addr, mailbox, uid)
    except (NoSuchMessage, MailboxError):
        raise ActionError(404, "message not found") from None


async def _summaries(
    c: Caller,
    mailbox: str,
    wanted: list[tuple[int, MessageMeta]],
    bodies: dict[int, bytes] | None = None,
) -> list[Json]:
    found: list[tuple[MessageMeta, int, bytes]] = []
    for seq, meta in wanted:
        data = (bodies or {}).get(meta.uid)
        if data is None:
            try:
                data = await c.app.store.read(c.addr, mailbox, meta.uid)
            except (NoSuchMessage, MailboxError):  # expunged meanwhile
                continue
        found.append((meta, seq, data))

    def build() -> list[Json]:
        return [views.summary(meta, seq, data) for meta, seq, data in found]

    if len(found) <= INLINE_SUMMARIES:
        return build()
    return await trio.to_thread.run_sync(build, limiter=c.app.cpu_work)
