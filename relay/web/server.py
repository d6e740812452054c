"""HTTP/1.1 sessions on h11 for the "http" and "https" listeners.

h11 is the protocol engine; this module owns one connection: it enforces the limits a slow or
hostile client could abuse (head size, body size, time to send a head or a body, time to read
our answer) and dispatches each request through the routing table.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

import h11
import trio

from relay.net import Deadline, Peer, close_after_refusal
from relay.web import iroh, routes
from relay.web.types import Request, Response, redirect, text_response
from relay.webimap import ws as webimap_ws
from relay.webimap.ws import Upgrade

if TYPE_CHECKING:
    from relay.app import App

MAX_HEAD = 16 * 1024  # request line + headers; beyond this: 431
HEAD_TIMEOUT = 15.0  # a whole request head, and the keep-alive idle time before it
BODY_GRACE = 15.0  # a body gets this long plus the time its bytes so far take at MIN_BODY_RATE
MIN_BODY_RATE = 16 * 1024  # bytes per second: slower uploads are cut off with 408
SEND_TIMEOUT = 30.0  # a client that does not read our answer is dropped
MAX_REQUESTS_PER_CONNECTION = 1000
RECEIVE_SIZE = 64 * 1024


class _Close(Exception):
    """The connection is finished (closed by the peer, timed out, or unusable)."""


async def handle(stream: trio.abc.Stream, peer: Peer, app: App, service: str) -> None:
    session = HTTPSession(stream, peer, app, service)
    with contextlib.suppress(_Close):
        await session.run()


_BUSY_BODY = b"too many connections from your address\n"
TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class HTTPSession:
    def __init__(self, stream: trio.abc.Stream, peer: Peer, app: App, service: str):
        self.stream = stream
        self.peer = peer
        self.app = app
        self.service = service
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.body_bytes = 0  # charged to app.body_budget for the request being read

    async def run(self) -> None:
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                await self.one_request()
            except h11.RemoteProtocolError as e:
                await self.send_error(e.error_status_hint, f"{e or 'bad request'}\n")
                return
            if self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                return
            self.conn.start_next_cycle()

    async def one_request(self) -> None:
        try:
            with trio.fail_after(HEAD_TIMEOUT):
                event = await self.next_event()
        except trio.TooSlowError:
            if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
                raise _Close from None  # an idle keep-alive connection: just close it
            await self.send_error(408, "request head took too long\n")
            raise _Close from None
        if isinstance(event, h11.ConnectionClosed):
            raise _Close
        assert isinstance(event, h11.Request), event
        # h11 bounds only heads that arrive incomplete; one that arrives whole is checked here.
        head_size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
        if head_size > MAX_HEAD:
            await self.send_error(431, "request head too large\n")
            raise _Close
        method = event.method.decode("ascii", "replace")
        target = event.target.decode("ascii", "replace")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
        request = Request(method, target, headers, b"", self.peer, self.service)
        declared = request.header("content-length")
        has_body = request.header("transfer-encoding") is not None or declared not in (None, "0")
        response = self.check(request)
        if response is None and iroh.wants_upgrade(request, self.app.config):
            await self.read_body(0)
            await self.switch_to_iroh()
            raise _Close
        if response is None and webimap_ws.wants_upgrade(request):
            await self.read_body(0)
            outcome = await webimap_ws.accept(request, self.app)
            if isinstance(outcome, Upgrade):
                await self.switch_to_websocket(outcome)
                raise _Close
            await self.send_response(outcome)  # refused (credentials, caps): keep-alive goes on
            return
        if response is not None:
            if has_body:  # not worth reading: answer, then close
                response.headers.append(("Connection", "close"))
            else:
                await self.read_body(0)
        else:
            route = routes.find(request.path)
            assert route is not None
            max_body = route.max_body(self.app.config)
            too_large = route.too_large or f"body larger than {max_body} bytes\n"
            if declared is not None and int(declared) > max_body:
                await self.send_error(413, too_large)
                raise _Close
            budget = self.app.body_budget
            try:
                request.body = await self.read_body(max_body, too_large)
                response = await self.call(route, request)
            finally:
                budget.give_back(self.body_bytes)
                self.body_bytes = 0
        await self.send_response(response, head_only=method == "HEAD")

    def check(self, request: Request) -> Response | None:
        """Answers that do not need the body: unknown path, feature off, wrong method, wrong
        scheme."""
        route = routes.find(request.path)
        if route is None or (self.service == "iroh" and request.path not in iroh.PATHS):
            return text_response(404, "not found\n")
        if route.unavailable is not None and (off := route.unavailable(self.app.config)):
            return off
        allowed = routes.allowed_methods(route)
        if request.method not in allowed:
            return text_response(
                405, "method not allowed\n", headers=[("Allow", ", ".join(sorted(allowed)))]
            )
        config = self.app.config
        if (
            self.service == "http"
            and not config.is_lan
            and config.listen.https
            and not route.plain_http
        ):
            port = "" if config.listen.https == 443 else f":{config.listen.https}"
            status = 301 if request.method in ("GET", "HEAD") else 308
            return redirect(f"https://{config.url_host}{port}{request.target}", status)
        return None

    async def read_body(self, max_body: int, too_large: str = "") -> bytes:
        chunks: list[bytes] = []
        size = 0
        if self.conn.they_are_waiting_for_100_continue:
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))
        try:
            # The time allowed grows with the bytes that actually arrived, not with the size
            # the client announced: a large Content-Length buys no time to trickle (slowloris).
            deadline = Deadline(BODY_GRACE, min_rate=MIN_BODY_RATE)
            with trio.fail_after(BODY_GRACE) as scope:
                while True:
                    event = await self.next_event()
                    if isinstance(event, h11.EndOfMessage):
                        return b"".join(chunks)
                    if isinstance(event, h11.ConnectionClosed):
                        raise _Close
                    assert isinstance(event, h11.Data), event
                    size += len(event.data)
                    deadline.extend_for(len(event.data))
                    scope.deadline = deadline.at
                    if size > max_body:
                        await self.send_error(413, too_large)
                        await close_after_refusal(self.stream)
                        raise _Close
                    if not self.app.body_budget.take(len(event.data)):
                        self.app.log.warning(
                            "http-memory-budget-exhausted", ip=self.app.log.redact(self.peer.ip)
                        )
                        await self.send_error(
                            503, "insufficient system resources, try again later\n"
                        )
                        await close_after_refusal(self.stream)
                        raise _Close
                    self.body_bytes += len(event.data)
                    chunks.append(event.data)
        except trio.TooSlowError:
            await self.send_error(408, "request body took too long\n")
            raise _Close from None

    async def call(self, route: routes.Route, request: Request) -> Response:
        started = time.monotonic()
        try:
            response = await route.handler(request, self.app)
        except Exception as e:  # a bug in one page must not kill the connection silently
            self.app.log.exception("http-handler-failed", e, path=request.path)
            return text_response(500, "internal error\n")
        self.app.log.debug(
            "http",
            method=request.method,
            path=request.path,
            status=response.status,
            ms=round((time.monotonic() - started) * 1000),
            ip=self.app.log.redact(self.peer.ip),
        )
        return response

    async def switch_to_iroh(self) -> None:
        """Answer 101 and hand the connection to the iroh relay until it ends."""
        upgrade = [("Upgrade", iroh.UPGRADE), ("Connection", "Upgrade")]
        await self.send(h11.InformationalResponse(status_code=101, headers=upgrade))
        initial, _ = self.conn.trailing_data
        await self.app.iroh.serve_client(
            self.stream, bytes(initial), self.peer.ip, self.app.config.iroh, self.app.log
        )

    async def switch_to_websocket(self, upgrade: Upgrade) -> None:
        """Answer 101 and hand the connection to WebIMAP's WebSocket session (wsproto) with
        whatever the client sent after its request."""
        with upgrade:
            await self.send(h11.InformationalResponse(status_code=101, headers=upgrade.headers))
            initial, _ = self.conn.trailing_data
            await upgrade.session.serve(self.stream, bytes(initial))

    async def next_event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                assert event is not h11.PAUSED  # we start the next cycle only after DONE
                assert isinstance(event, h11.Event)
                return event
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise _Close from None
            self.conn.receive_data(bytes(data))  # no copy: sockets hand us bytes already

    async def send_response(self, response: Response, *, head_only: bool = False) -> None:
        headers = response.all_headers()
        await self.send(h11.Response(status_code=response.status, headers=headers))
        if response.body and not head_only:
            await self.send(h11.Data(data=response.body))
        await self.send(h11.EndOfMessage())

    async def send_error(self, status: int, body: str) -> None:
        """Answer a request we will not serve with `body` as it is, then let the connection close."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = text_response(status, body, headers=[("Connection", "close")])
        if body.startswith("{"):  # a JSON API's error (WebIMAP's 413)
            response.content_type = "application/json"
        with contextlib.suppress(_Close, h11.LocalProtocolError):
            await self.send_response(response)

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if not data:
            return
        try:
            with trio.fail_after(SEND_TIMEOUT):
                await self.stream.send_all(data)
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            raise _Close from None
