"""One IMAP connection: read bytes, feed the engine, run command handlers, write responses.

`handle()` is the service entry point for the "imaps" (implicit TLS) and "imap" (STARTTLS)
listeners. A session holds only what it needs between commands (the engine's small buffers,
the selected mailbox's UID list, the store change channel), so thousands can sit in IDLE.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import trio

from relay.app import App
from relay.net import Deadline, Peer, close_after_refusal
from relay.store import MailboxChange

from . import auth, fetch, idle, mailboxes, messages, metadata, respond
from .commands import Command, HandlerTable
from .engine import (
    NEED_DATA,
    AuthResponse,
    BadCommand,
    Closed,
    CommandReceived,
    ContinueLiteral,
    Fatal,
    IdleDone,
    LiteralTooBig,
    ServerEngine,
)
from .errors import Bad, Disconnect, No
from .selected import SelectedMailbox

RECEIVE_SIZE = 16 * 1024
FLUSH_AT = 64 * 1024
PREAUTH_TIMEOUT = 60.0  # a client that has not logged in gets one minute per command
AUTH_TIMEOUT = 30 * 60.0  # RFC 3501 §5.4: the autologout timer is at least 30 minutes
MIN_LITERAL_RATE = 1024  # bytes per second an APPEND's message must average ...
LITERAL_GRACE = 30.0  # ... from this many seconds after it began
SEND_TIMEOUT = 60.0
CLOSE_TIMEOUT = 2.0

HANDLERS: HandlerTable = {
    **auth.HANDLERS,
    **mailboxes.HANDLERS,
    **fetch.HANDLERS,
    **messages.HANDLERS,
    **metadata.HANDLERS,
    **idle.HANDLERS,
}
# Commands during which EXPUNGE responses must not be sent (RFC 3501 §7.4.1).
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH"})


TOO_MANY_CONNECTIONS = b"* BYE Too many connections from your address.\r\n"


async def handle(stream: trio.abc.Stream, peer: Peer, app: App, service: str) -> None:
    try:
        session = Session(stream, peer, app, service)
        try:
            await session.run()
            # A clean TLS close (close_notify) tells the client nothing was cut off.
            with trio.move_on_after(CLOSE_TIMEOUT):
                await session.stream.aclose()
        finally:
            with trio.CancelScope(shield=True):
                await session.release()
    except (Disconnect, trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away or was sent away; nothing more to say


class Session:
    def __init__(self, stream: trio.abc.Stream, peer: Peer, app: App, service: str) -> None:
        self.stream = stream
        self.peer = peer
        self.app = app
        self.service = service
        self.tls = service == "imaps"
        self.compressed = False
        self.engine = ServerEngine()
        self.user: str | None = None
        self.selected: SelectedMailbox | None = None
        self.changes: trio.MemoryReceiveChannel[MailboxChange] | None = None
        self.wake_scope: trio.CancelScope | None = None  # IDLE's wait for the client
        self.woken = False  # a change arrived since IDLE last reported
        self._watch: AbstractAsyncContextManager | None = None
        self.condstore = False
        self.after_response: Callable[[], Awaitable[None]] | None = None
        self.logged_out = False
        self._out = bytearray()
        self.body_bytes = 0  # literal bytes charged to app.body_budget for the current command

    @property
    def store(self):  # noqa: ANN201 - the store's type lives with the store
        return self.app.store

    @property
    def addr(self) -> str:
        if self.user is None:
            raise Bad("Not logged in")
        return self.user

    # -- output -------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._out += data

    async def flush(self) -> None:
        if not self._out:
            return
        data, self._out = bytes(self._out), bytearray()
        with trio.move_on_after(SEND_TIMEOUT) as scope:
            await self.stream.send_all(data)
        if scope.cancelled_caught:
            raise Disconnect("send timed out")

    async def maybe_flush(self) -> None:
        if len(self._out) >= FLUSH_AT:
            await self.flush()

    # -- input --------------------------------------------------------------------------------

    async def next_event(self, deadline: Deadline):  # noqa: ANN201 - engine event union
        """The next engine event; the client is logged out if it is not complete by `deadline`
        (a moment, not a silence: a client trickling bytes is cut off all the same). A literal
        (an APPEND's message) must average MIN_LITERAL_RATE after LITERAL_GRACE seconds; its
        bytes are charged to the relay's memory budget for message bodies until the command
        is done."""
        while True:
            event = self.engine.next_event()
            if event is not NEED_DATA:
                return event
            in_literal = self.engine.in_literal
            if in_literal:
                deadline.start_bulk(LITERAL_GRACE)
            if deadline.at == math.inf:  # IDLE: no cancel scope held while thousands wait
                data = await self.stream.receive_some(RECEIVE_SIZE)
            else:
                with trio.move_on_at(deadline.at) as scope:
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                if scope.cancelled_caught:
                    self.send(respond.status("BYE", "Disconnected for inactivity."))
                    await self.flush()
                    raise Disconnect("idle timeout")
            if in_literal and data:
                deadline.extend_for(len(data))
                await self._charge_body(len(data))
            self.engine.receive_data(data)

    async def _charge_body(self, size: int) -> None:
        if not self.app.body_budget.take(size):
            self.app.log.warning(
                "imap-memory-budget-exhausted", ip=self.app.log.redact(self.peer.ip)
            )
            self.send(respond.status("BYE", "Insufficient system resources, try again later."))
            await self.flush()
            await close_after_refusal(self.stream)
            raise Disconnect("memory budget exhausted")
        self.body_bytes += size

    def give_back_body(self) -> None:
        self.app.body_budget.give_back(self.body_bytes)
        self.body_bytes = 0

    async def read_auth_line(self) -> bytes:
        self.engine.expect_auth_response()
        event = await self.next_event(Deadline(PREAUTH_TIMEOUT, min_rate=MIN_LITERAL_RATE))
        if not isinstance(event, AuthResponse):
            raise Disconnect("connection closed during AUTHENTICATE")
        return event.data

    def take_buffered_input(self) -> bytes:
        """Bytes the client sent after the current command (pipelined before a STARTTLS or
        COMPRESS switch): the caller decides whether they are dropped or re-read."""
        return self.engine.take_buffered()

    # -- the command loop ---------------------------------------------------------------------

    async def run(self) -> None:
        self.send(
            respond.status("OK", "Chatmail relay ready.", "CAPABILITY " + auth.capabilities(self))
        )
        await self.flush()
        deadline = None
        while not self.logged_out:
            if deadline is None:
                # One deadline for a whole command, its literals included.
                timeout = AUTH_TIMEOUT if self.user else PREAUTH_TIMEOUT
                deadline = Deadline(timeout, min_rate=MIN_LITERAL_RATE)
            event = await self.next_event(deadline)
            if not isinstance(event, ContinueLiteral):
                deadline = None
            if isinstance(event, CommandReceived):
                await self.dispatch(event.command)
            elif isinstance(event, ContinueLiteral):
                self.send(respond.continuation("Ready for literal data"))
            elif isinstance(event, BadCommand):
                self.send(
                    respond.tagged(
                        event.tag or "*", "BAD", f"Error in IMAP command: {event.message}"
                    )
                )
            elif isinstance(event, LiteralTooBig):
                self.send(respond.tagged(event.tag or "*", "NO", "Literal too large.", "TOOBIG"))
            elif isinstance(event, Fatal):
                self.send(respond.status("BYE", event.message))
                await self.flush()
                return
            elif isinstance(event, Closed):
                return
            elif isinstance(event, IdleDone | AuthResponse):
                self.send(respond.status("BAD", "Unexpected input."))
            if deadline is None:  # the command is done: its literal is stored or refused
                self.give_back_body()
            await self.flush()

    async def dispatch(self, cmd: Command) -> None:
        entry = HANDLERS.get(cmd.name)
        if entry is None:
            self.send(respond.tagged(cmd.tag, "BAD", "Unknown command."))
            return
        state, handler = entry
        refusal = None
        if state == "nonauth" and self.user is not None:
            refusal = "Already logged in."
        elif state in ("auth", "selected") and self.user is None:
            refusal = "Not logged in."
        elif state == "selected" and self.selected is None:
            refusal = "No mailbox selected."
        if refusal is not None:
            self.send(respond.tagged(cmd.tag, "BAD", refusal))
            return
        allow_expunge = cmd.uid or cmd.name not in _NO_EXPUNGE
        if self.selected is not None:
            # Mail that arrived since the last command becomes visible (EXISTS) first.
            await self.report_changes(allow_expunge=allow_expunge)
        try:
            result = await handler(self, cmd)
        except No as e:
            await self.report_changes(allow_expunge=False)
            self.send(respond.tagged(cmd.tag, "NO", e.text, e.code))
            return
        except Bad as e:
            self.send(respond.tagged(cmd.tag, "BAD", e.text, e.code))
            return
        except (Disconnect, trio.BrokenResourceError, trio.ClosedResourceError):
            raise  # the client went away (or must go): the session ends, nothing to answer
        except Exception as e:  # a bug must cost this command, not the session or the relay
            self.app.log.exception("imap-command-failed", e, command=cmd.name)
            self.send(respond.tagged(cmd.tag, "NO", "Internal error, try again.", "SERVERBUG"))
            return
        if self.user is not None and not self.logged_out:
            await self.report_changes(allow_expunge=allow_expunge)
        code, text = (None, result) if isinstance(result, str) else result or (None, "Completed.")
        self.send(respond.tagged(cmd.tag, "OK", text, code))
        if self.after_response is not None:
            switch, self.after_response = self.after_response, None
            await self.flush()
            await switch()

    # -- changes made by other sessions -------------------------------------------------------

    async def open_watch(self) -> None:
        """Subscribe to the account's changes. The store closes a subscription whose reader
        fell behind (after a final "resync"), so this is also how a session re-subscribes."""
        await self.close_watch()
        watch = self.store.watch(self.addr, self.wake)
        self.changes = await watch.__aenter__()
        self._watch = watch

    def wake(self) -> None:
        """A change of the account was queued: an IDLE waiting for its client reports it now."""
        self.woken = True
        if self.wake_scope is not None:
            self.wake_scope.cancel()

    async def close_watch(self) -> None:
        watch, self._watch, self.changes = self._watch, None, None
        if watch is not None:
            await watch.__aexit__(None, None, None)

    def drain_changes(self) -> bool:
        """Apply queued changes to the selected mailbox; False if the subscription ended."""
        if self.changes is None:
            return self._watch is None
        while True:
            try:
                change = self.changes.receive_nowait()
            except trio.WouldBlock:
                return True
            except (trio.EndOfChannel, trio.ClosedResourceError):
                self.changes = None
                return False
            if self.selected is not None:
                self.selected.note_change(change)

    async def report_changes(self, *, allow_expunge: bool) -> None:
        if not self.drain_changes():
            await self.open_watch()
        selected = self.selected
        if selected is None:
            return
        if selected.needs_snapshot:
            snap = await self.store.snapshot(self.addr, selected.name)
            for line in selected.apply_snapshot(snap):
                self.send(line)
        for line in selected.pending_responses(allow_expunge=allow_expunge):
            self.send(line)

    async def refresh_selected(self) -> None:
        """Pick up messages this session itself added to the selected mailbox (APPEND, COPY),
        so their EXISTS goes out before the tagged OK, as RFC 3501 expects."""
        selected = self.selected
        if selected is None:
            return
        snap = await self.store.snapshot(self.addr, selected.name)
        uids = tuple(m.uid for m in snap.messages)
        selected.note_change(MailboxChange(selected.name, "exists", uids))

    async def release(self) -> None:
        self.give_back_body()
        if self.user is not None:
            self.app.admission.per_account.release(self.user)
        await self.close_watch()
