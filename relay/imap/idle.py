"""IDLE (RFC 2177): push changes the moment the store reports them durable.

While idling, the session's one task waits for the client's DONE; a store change cancels that
wait, and the session writes `* n EXISTS` (and EXPUNGE / FETCH FLAGS) straight away and waits
again. `* OK Still here` goes out every two minutes so NAT boxes and the client's own five-minute
IDLE timeout see a live connection.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from relay.net import Deadline

from . import respond
from .commands import Command, HandlerTable
from .compress import DeflateStream
from .engine import IdleDone
from .errors import Bad, Disconnect

if TYPE_CHECKING:
    from .session import Session

KEEPALIVE_INTERVAL = 120.0


async def cmd_idle(s: Session, cmd: Command) -> str:
    await s.report_changes(allow_expunge=True)
    s.send(respond.continuation("idling"))
    await s.flush()
    s.engine.expect_idle_done()
    if isinstance(s.stream, DeflateStream):
        s.stream.expect_silence()  # thousands of sessions wait here: each without zlib states
    while (event := await _client_or_wake(s)) is None:
        if s.woken:
            await s.report_changes(allow_expunge=True)
        else:
            s.send(respond.status("OK", "Still here"))
        # A cancelled send would leave the TLS stream broken, so the write is shielded;
        # flush() bounds it with its own timeout.
        with trio.CancelScope(shield=True):
            await s.flush()
    if not isinstance(event, IdleDone):
        raise Disconnect("connection closed during IDLE")
    if not event.ok:
        raise Bad("Expected DONE.")
    return "Idle completed."


async def _client_or_wake(s: Session) -> object | None:
    """The client's next event (DONE, or the end of the connection); None when a change of the
    account arrived (s.woken) or the keep-alive is due. One task waits on both: a change
    cancels the wait (Session.wake), so an idle session holds no second task or nursery."""
    # Queued before this wait, or the store ended the subscription (report_changes subscribes
    # again): report first.
    s.woken = s.changes is None or bool(s.changes.statistics().current_buffer_used)
    if s.woken:
        return None
    with trio.move_on_after(KEEPALIVE_INTERVAL) as scope:
        s.wake_scope = scope
        try:
            # No inactivity limit: the keep-alives test the link.
            return await s.next_event(Deadline(math.inf, min_rate=1))
        finally:
            s.wake_scope = None
    return None


HANDLERS: HandlerTable = {"IDLE": ("auth", cmd_idle)}
