"""WebIMAP's REST routes under /webimap/ (and the legacy /websmtp/send), as madmail has them.

Every request logs in with the headers X-Email and X-Password (relay.webimap.auth). Answers
are JSON; errors are {"error": message} with madmail's strings and statuses. While
[webimap] enabled is false every route answers 404 {"error":"not found"}, and so do the send
routes while send is false; both are read per request, so a reload switches them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import trio

from relay.config import Config
from relay.web.types import Request, Response, json_response

from . import actions
from .actions import ActionError, Caller
from .auth import login
from .watch import wait_for_new

if TYPE_CHECKING:
    from relay.app import App

PREFIX = "/webimap/"
SEND_PATHS = ("/webimap/send", "/websmtp/send")
MAX_WAIT = 120  # seconds a long-poll may wait (madmail's cap)
REQUEST_BODY = 64 * 1024  # flags and other small JSON bodies
TOO_LARGE = '{"error": "message too large"}'
_CORS_METHODS = "GET, POST, DELETE, OPTIONS"
_CORS_HEADERS = "Content-Type, X-Email, X-Password"


def send_body_limit(config: Config) -> int:
    """A message of the maximum size as a JSON string: escaping (\\r\\n, \\u00XX) can double it."""
    return 2 * config.limits.max_message_size + REQUEST_BODY


def request_body_limit(config: Config) -> int:
    return REQUEST_BODY


def not_found() -> Response:
    return json_response(404, {"error": "not found"})


def unavailable(config: Config) -> Response | None:
    """The answer while WebIMAP is off (checked before anything is read or authenticated)."""
    return None if config.webimap.enabled else not_found()


def send_unavailable(config: Config) -> Response | None:
    return None if config.webimap.enabled and config.webimap.send else not_found()


def cors_headers(config: Config, origin: str | None) -> list[tuple[str, str]]:
    """None by default; "*" only when configured; otherwise the Origin if it is listed."""
    allowed = config.webimap.cors_origins
    if "*" in allowed:
        value = "*"
    elif origin is not None and origin in allowed:
        value = origin
    else:
        return []
    headers = [
        ("Access-Control-Allow-Origin", value),
        ("Access-Control-Allow-Methods", _CORS_METHODS),
        ("Access-Control-Allow-Headers", _CORS_HEADERS),
        ("Access-Control-Max-Age", "86400"),
    ]
    return headers if value == "*" else [*headers, ("Vary", "Origin")]


def _answer(request: Request, app: App, status: int, value: Any) -> Response:
    response = json_response(status, value)
    response.headers += cors_headers(app.config, request.header("origin"))
    return response


def _preflight(request: Request, app: App) -> Response:
    return Response(204, headers=cors_headers(app.config, request.header("origin")))


def _error(request: Request, app: App, e: ActionError) -> Response:
    return _answer(request, app, e.status, {"error": e.message})


def _header_text(request: Request, name: str) -> str | None:
    """A header as the client's UTF-8 (the server hands values over as latin-1)."""
    value = request.header(name)
    return None if value is None else value.encode("latin-1").decode("utf-8", "replace")


async def _caller(request: Request, app: App) -> Caller:
    email, password = _header_text(request, "x-email"), _header_text(request, "x-password")
    return await login(app, request.peer.ip, email, password, service=request.service)


def _json_body(request: Request) -> dict[str, Any]:
    try:
        value = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise ActionError(400, "invalid JSON") from None
    if not isinstance(value, dict):
        raise ActionError(400, "invalid JSON")
    return value


def _query(request: Request, name: str) -> str:
    values = request.query.get(name)
    return values[0] if values else ""


def _number(text: str, default: int = 0) -> int:
    return int(text) if text.isdigit() and len(text) < 12 else default


async def route(request: Request, app: App) -> Response:
    """Everything under /webimap/ but send and the WebSocket upgrade."""
    if request.method == "OPTIONS":  # a CORS preflight carries no credentials
        return _preflight(request, app)
    try:
        return await _dispatch(request, app)
    except ActionError as e:
        return _error(request, app, e)


async def send(request: Request, app: App) -> Response:
    """POST /webimap/send and the legacy /websmtp/send: {from?, to[], body}."""
    if request.method == "OPTIONS":
        return _preflight(request, app)
    try:
        caller = await _caller(request, app)
        result = await actions.send(caller, _json_body(request))
    except ActionError as e:
        return _error(request, app, e)
    return _answer(request, app, 200, result)


async def _dispatch(request: Request, app: App) -> Response:
    path = request.path[len(PREFIX) :]
    method = "GET" if request.method == "HEAD" else request.method
    if path == "ws":
        if method != "GET":
            raise ActionError(405, "method not allowed")
        raise ActionError(426, "websocket upgrade required")
    if path == "mailboxes":
        _allow(method, "GET")
        caller = await _caller(request, app)
        return _answer(request, app, 200, await actions.list_mailboxes(caller, {}))
    if path == "messages":
        _allow(method, "GET")
        caller = await _caller(request, app)
        return _answer(request, app, 200, await _messages(request, caller))
    if path == "message/flags":
        _allow(method, "POST")
        caller = await _caller(request, app)
        return _answer(request, app, 200, await actions.flags(caller, _json_body(request)))
    if path.startswith("message/"):
        uid = _number(path[len("message/") :], -1)
        if uid < 0:
            raise ActionError(400, "invalid UID")
        _allow(method, "GET", "DELETE")
        caller = await _caller(request, app)
        data = {"mailbox": _query(request, "mailbox"), "uid": uid}
        action = actions.fetch if method == "GET" else actions.delete
        return _answer(request, app, 200, await action(caller, data))
    if path.startswith("messages/"):  # madmail v2: DELETE /webimap/messages/{mailbox}/{uid}
        mailbox, _, last = path[len("messages/") :].rpartition("/")
        uid = _number(last, -1)
        if not mailbox or uid < 0:
            raise ActionError(404, "not found")
        _allow(method, "DELETE")
        caller = await _caller(request, app)
        return _answer(
            request,
            app,
            200,
            await actions.delete(caller, {"mailbox": unquote(mailbox), "uid": uid}),
        )
    raise ActionError(404, "not found")


def _allow(method: str, *methods: str) -> None:
    if method not in methods:
        raise ActionError(405, "method not allowed")


async def _messages(request: Request, caller: Caller) -> list[Any]:
    """GET /webimap/messages?mailbox=INBOX&since_uid=0&wait=0: with `wait`, a long-poll that
    answers as soon as a message above since_uid is durable (store notifications, as IDLE),
    or with [] after `wait` seconds. A waiting request counts as one of the account's
    connections (limits.max_connections_per_account)."""
    mailbox = _query(request, "mailbox") or "INBOX"
    since_uid = _number(_query(request, "since_uid"))
    wait = min(MAX_WAIT, _number(_query(request, "wait")))
    found = await actions.summaries_since(caller, mailbox, since_uid)
    if found or not wait:
        return found
    app = caller.app
    per_account = app.admission.per_account
    if not per_account.claim(caller.addr, app.config.limits.max_connections_per_account):
        raise ActionError(429, "too many connections for this account")
    try:
        with trio.move_on_after(wait):
            return await wait_for_new(caller, mailbox, since_uid)
    finally:
        per_account.release(caller.addr)
    return []
