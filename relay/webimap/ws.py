"""The WebSocket at /webimap/ws, on wsproto (sans-IO), after relay.web.server's h11 hand-over.

`accept()` decides the upgrade from the request alone: a login from `?email=&password=`
(the core's authenticate(), as IMAP), the mailbox to watch (`mailbox`, default INBOX) and
where its pushes start (`since_uid`, default 0: every message there is pushed once, as
madmail does). The account's connection cap (limits.max_connections_per_account, shared with
IMAP and the long-poll) is claimed for the socket's life; the TCP connection itself stays
counted in the per-IP admission of every service.

A session then runs three tasks:
- the reader: frames in, one request at a time ({"req_id","action","data"} → result/error,
  {"type":"ping"} → {"action":"pong"}); a message larger than the send limit closes with 1009,
  nothing from the client for [webimap] idle_timeout closes with 1001; and a WebSocket ping
  every [webimap] ping_interval;
- the pusher: `new_message` for each message above the last uid, the moment the store reports
  it durable (its change notifications, as IMAP IDLE: no polling);
- the writer: the one task that writes. Everything goes through a bounded Outbox; a client
  that leaves it full for [webimap] send_timeout is a slow reader and is disconnected.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, generate_accept_token

from relay.web.types import Request, Response, json_response

from . import actions
from .actions import ActionError, Caller
from .auth import login
from .outbox import Outbox, SlowReader
from .rest import send_body_limit
from .watch import follow_new

if TYPE_CHECKING:
    from relay.app import App

PATH = "/webimap/ws"
RECEIVE_SIZE = 64 * 1024
OUTBOX_BYTES = 1 << 20  # queued for one socket at most (one larger frame goes alone)
CLOSE_TIMEOUT = 2.0
# Close codes (RFC 6455 §7.4.1)
GOING_AWAY, POLICY, TOO_BIG, INTERNAL, TRY_LATER = 1001, 1008, 1009, 1011, 1013


def wants_upgrade(request: Request) -> bool:
    upgrade = (request.header("upgrade") or "").strip().lower()
    return request.method == "GET" and request.path == PATH and upgrade == "websocket"


@dataclass
class Upgrade:
    """An accepted upgrade: the 101's headers and the session to run after it. Used as a
    context manager by the server, so the account's connection slot is given back whatever
    happens to the 101."""

    headers: list[tuple[str, str]]
    session: WebSocketSession
    _released: bool = field(default=False, repr=False)

    def __enter__(self) -> Upgrade:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._released:
            self._released = True
            caller = self.session.caller
            caller.app.admission.per_account.release(caller.addr)


def _refuse(e: ActionError) -> Response:
    return json_response(e.status, {"error": e.message})


async def accept(request: Request, app: App) -> Response | Upgrade:
    key = request.header("sec-websocket-key")
    if request.header("sec-websocket-version") != "13" or not key:
        response = json_response(426, {"error": "websocket version 13 required"})
        response.headers.append(("Sec-WebSocket-Version", "13"))
        return response
    query = request.query

    def param(name: str) -> str:
        values = query.get(name)
        return values[0] if values else ""

    try:
        caller = await login(
            app, request.peer.ip, param("email"), param("password"), service=request.service
        )
        mailbox = param("mailbox") or "INBOX"
        await actions.summaries_since(caller, mailbox, 1 << 62)  # 404 if there is no such mailbox
    except ActionError as e:
        return _refuse(e)
    since = param("since_uid")
    since_uid = int(since) if since.isdigit() and len(since) < 12 else 0
    limit = app.config.limits.max_connections_per_account
    if not app.admission.per_account.claim(caller.addr, limit):
        app.log.info("webimap-account-busy", account=app.log.redact(caller.addr))
        return _refuse(ActionError(429, "too many connections for this account"))
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", generate_accept_token(key.encode("latin-1")).decode("ascii")),
    ]
    return Upgrade(headers, WebSocketSession(caller, request.peer.ip, mailbox, since_uid))


class _Closing(Exception):
    """The session ends with this close frame (code, reason)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class WebSocketSession:
    def __init__(self, caller: Caller, ip: str, mailbox: str, since_uid: int) -> None:
        config = caller.app.config
        self.caller = caller
        self.app = caller.app
        self.ip = ip
        self.mailbox = mailbox
        self.since_uid = since_uid
        web = config.webimap
        self.ping_interval = float(web.ping_interval)
        self.idle_timeout = float(web.idle_timeout)
        self.send_timeout = float(web.send_timeout)
        self.max_message = send_body_limit(config)
        self.outbox = Outbox(web.send_queue, OUTBOX_BYTES)
        self.ws = Connection(ConnectionType.SERVER)
        self._close_frame: bytes | None = None
        self._close_sent = trio.Event()
        self._parts: list[str | bytes] = []
        self._buffered = 0  # bytes of the message being received, charged to the body budget

    # -- the session ----------------------------------------------------------------------

    async def serve(self, stream: trio.abc.Stream, initial: bytes) -> None:
        log = self.app.log
        log.debug("webimap-ws-open", account=log.redact(self.caller.addr))
        self.ws.receive_data(initial)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, stream)
                nursery.start_soon(self._pusher)
                closing = await self._reader(stream)
                if closing is not None:
                    await self._close(closing.code, closing.reason)
                    with trio.move_on_after(CLOSE_TIMEOUT):
                        await self._close_sent.wait()
                nursery.cancel_scope.cancel()
        except* SlowReader as group:
            log.warning(
                "webimap-slow-reader",
                account=log.redact(self.caller.addr),
                ip=log.redact(self.ip),
                detail=str(group.exceptions[0]),
            )
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        finally:
            self.app.body_budget.give_back(self._buffered)
            self._buffered = 0
            log.debug("webimap-ws-closed", account=log.redact(self.caller.addr))

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return
        self._close_frame = self.ws.send(CloseConnection(code=code, reason=reason))
        await self.outbox.put(self._close_frame, self.send_timeout)

    async def _send(self, event: Event) -> None:
        try:
            frame = self.ws.send(event)
        except LocalProtocolError:
            return  # closing: nothing more goes out
        await self.outbox.put(frame, self.send_timeout)

    async def send_json(self, value: Any) -> None:
        await self._send(TextMessage(data=json.dumps(value)))

    # -- tasks ----------------------------------------------------------------------------

    async def _writer(self, stream: trio.abc.Stream) -> None:
        while True:
            frame = await self.outbox.get()
            with trio.move_on_after(self.send_timeout) as scope:
                await stream.send_all(frame)
            if scope.cancelled_caught:
                raise SlowReader(f"a write of {len(frame)} bytes took over {self.send_timeout} s")
            if frame is self._close_frame:
                self._close_sent.set()

    async def _pusher(self) -> None:
        async def push(found: list[Any]) -> None:
            for summary in found:
                await self.send_json({"action": "new_message", "data": summary})

        with contextlib.suppress(ActionError):  # the mailbox went away: nothing to watch
            await follow_new(self.caller, self.mailbox, self.since_uid, push)

    async def _reader(self, stream: trio.abc.Stream) -> _Closing | None:
        """Frames in until the client closes (None) or we must close (the reason). It also
        sends the pings (one task less per socket: thousands may be open)."""
        now = trio.current_time()
        silent_until, next_ping = now + self.idle_timeout, now + self.ping_interval
        while True:
            for event in self.ws.events():
                try:
                    done = await self._event(event)
                except _Closing as closing:
                    return closing
                if done:
                    return None
            data = None
            with trio.move_on_at(min(silent_until, next_ping)):
                data = await stream.receive_some(RECEIVE_SIZE)
            now = trio.current_time()
            if data is None:  # a timer ran out
                if now >= silent_until:
                    return _Closing(GOING_AWAY, "idle timeout")
                next_ping = now + self.ping_interval
                await self._send(Ping(payload=b""))
                continue
            if not data:
                return None  # the TCP connection ended without a close frame
            silent_until = now + self.idle_timeout
            self.ws.receive_data(bytes(data))

    async def _event(self, event: Event) -> bool:
        """Handle one event; True when the connection is done."""
        if isinstance(event, TextMessage | BytesMessage):
            data = event.data
            await self._message_part(
                bytes(data) if isinstance(data, bytearray) else data, event.message_finished
            )
        elif isinstance(event, Ping):
            await self._send(event.response())
        elif isinstance(event, CloseConnection):
            if self.ws.state is ConnectionState.REMOTE_CLOSING:  # the client's close
                self._close_frame = self.ws.send(event.response())
                await self.outbox.put(self._close_frame, self.send_timeout)
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await self._close_sent.wait()
                return True
            if self.ws.state is ConnectionState.OPEN:  # a protocol error wsproto found
                raise _Closing(event.code, (event.reason or "")[:120])
            return True
        return False  # a pong: it counted as life, nothing else to do

    async def _message_part(self, data: str | bytes, finished: bool) -> None:
        size = len(data)
        if self._buffered + size > self.max_message:
            raise _Closing(TOO_BIG, "message too big")
        if not self.app.body_budget.take(size):
            self.app.log.warning("webimap-memory-budget-exhausted", ip=self.app.log.redact(self.ip))
            raise _Closing(TRY_LATER, "insufficient system resources, try again later")
        self._buffered += size
        self._parts.append(data)
        if not finished:
            return
        parts, self._parts = self._parts, []
        try:
            if all(isinstance(p, str) for p in parts):
                text: str | bytes = "".join(parts)  # type: ignore[arg-type]
            else:
                text = b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)
            del parts
            await self._request(text)
        finally:
            self.app.body_budget.give_back(self._buffered)
            self._buffered = 0

    async def _request(self, text: str | bytes) -> None:
        try:
            message = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            message = None
        if not isinstance(message, dict):
            await self.send_json({"action": "error", "data": "invalid JSON"})
            return
        if message.get("type") == "ping":
            await self.send_json({"action": "pong"})
            return
        req_id = message.get("req_id")
        action = message.get("action")
        reply: dict[str, Any] = {} if req_id in (None, "") else {"req_id": req_id}
        try:
            result = await actions.run(self.caller, str(action or ""), message.get("data"))
        except ActionError as e:
            reply |= {"action": "error", "data": e.message}
        except Exception as e:  # a bug costs this request, not the socket
            self.app.log.exception("webimap-action-failed", e, action=str(action)[:40])
            reply |= {"action": "error", "data": "internal error"}
        else:
            reply |= {"action": "result", "data": result}
        await self.send_json(reply)
