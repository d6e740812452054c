"""`POST /api/admin`: the admin method table over HTTPS in madmail's envelope, and the dashboard.

Request: `{"method": "GET", "resource": "/admin/status", "headers": {"Authorization": "Bearer
<token>"}, "body": {...}}` (the Authorization header of the HTTP request itself works too).
Answer: always HTTP 200 with `{"status", "resource", "body", "error", "version"}`, as madmail's,
so its admin web can drive this relay. The body is capped by the route (1 MB) before any of
this runs; ten failed authentications in a minute from one address lock that address out for
the rest of the minute, even with the right token.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from relay.core.admin import table
from relay.core.admin.errors import AdminError
from relay.core.admin.token import token_matches
from relay.web.types import Request, Response, json_response

if TYPE_CHECKING:
    from relay.app import App

MAX_BODY = 1 << 20
BEARER = "bearer "


def relay_version() -> str:
    try:
        return version("chatmail-relay-appliance")
    except PackageNotFoundError:
        return "unknown"


async def api(request: Request, app: App) -> Response:
    resource = ""
    try:
        envelope = _envelope(request.body)
        resource = str(envelope.get("resource") or "")
        _authenticate(request, app, envelope)
        method = str(envelope.get("method") or "GET").upper()
        op, args = table.find(method, resource, local=False)
        body = await table.call(app, op, args, envelope.get("body"))
        status, error = 200, None
    except AdminError as e:
        status, body, error = e.status, None, str(e)
    except Exception as e:  # a bug answers in the envelope too, and is logged with its trace
        app.log.exception("admin-api-failed", e, resource=resource)
        status, body, error = 500, None, "internal error"
    return json_response(
        200,
        {
            "status": status,
            "resource": resource,
            "body": body,
            "error": error,
            "version": relay_version(),
        },
    )


def _envelope(raw: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(raw)
    except ValueError:
        raise AdminError(400, "invalid JSON") from None
    if not isinstance(envelope, dict):
        raise AdminError(400, "the request must be a JSON object")
    return envelope


def _authenticate(request: Request, app: App, envelope: dict[str, Any]) -> None:
    failed = app.admin.failed_auth
    ip = request.peer.ip
    if failed.blocked(ip):
        raise AdminError(429, "too many failed authentications; try again in a minute")
    headers = envelope.get("headers")
    offered = headers.get("Authorization") if isinstance(headers, dict) else None
    offered = offered or request.header("authorization") or ""
    if not isinstance(offered, str) or not offered.lower().startswith(BEARER):
        failed.failed(ip)
        raise AdminError(401, "missing bearer token")
    if not token_matches(app.config, offered[len(BEARER) :].strip()):
        failed.failed(ip)
        app.log.warning("admin-auth-failed", ip=app.log.redact(ip))
        raise AdminError(401, "invalid token")
