"""IDLE (RFC 2177): push changes the moment the store reports them durable.

While idling, one task waits for the client's DONE and another for store changes; the second
writes `* n EXISTS` (and EXPUNGE / FETCH FLAGS) straight away, and `* OK Still here` every two
minutes so NAT boxes and the client's own five-minute IDLE timeout see a live connection.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from relay.net import Deadline
from relay.store import MailboxChange

from . import respond
from .commands import Command, HandlerTable
from .compress import DeflateStream
from .engine import IdleDone
from .errors import Bad, Disconnect

if TYPE_CHECKING:
    from .session import Session

KEEPALIVE_INTERVAL = 120.0
RESYNC = MailboxChange("", "resync")
_CONNECTION_GONE = (Disconnect, trio.BrokenResourceError, trio.ClosedResourceError)


async def cmd_idle(s: Session, cmd: Command) -> str:
    await s.report_changes(allow_expunge=True)
    s.send(respond.continuation("idling"))
    await s.flush()
    s.engine.expect_idle_done()
    if isinstance(s.stream, DeflateStream):
        s.stream.expect_silence()  # thousands of sessions wait here: each without zlib states
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_push_changes, s)
            # No inactivity limit: the keep-alives test the link.
            event = await s.next_event(Deadline(math.inf, min_rate=1))
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if group.subgroup(_CONNECTION_GONE) is not None:
            raise Disconnect("connection lost during IDLE") from None
        raise
    if not isinstance(event, IdleDone):
        raise Disconnect("connection closed during IDLE")
    if not event.ok:
        raise Bad("Expected DONE.")
    return "Idle completed."


async def _push_changes(s: Session) -> None:
    while True:
        with trio.move_on_after(KEEPALIVE_INTERVAL) as timer:
            await _wait_for_change(s)
        if timer.cancelled_caught:
            s.send(respond.status("OK", "Still here"))
        else:
            await s.report_changes(allow_expunge=True)
        # A cancelled send would leave the TLS stream broken, so the write is shielded;
        # flush() bounds it with its own timeout.
        with trio.CancelScope(shield=True):
            await s.flush()


async def _wait_for_change(s: Session) -> None:
    if s.changes is None:
        await s.open_watch()  # the store ended a subscription that fell behind
        if s.selected is not None:
            s.selected.note_change(RESYNC)
        return
    try:
        change = await s.changes.receive()
    except (trio.EndOfChannel, trio.ClosedResourceError):
        s.changes = None
        return
    if s.selected is not None:
        s.selected.note_change(change)


HANDLERS: HandlerTable = {"IDLE": ("auth", cmd_idle)}
