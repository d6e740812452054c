"""POST /new: fresh credentials for Delta Chat's DCACCOUNT flow.

Nothing is stored here: the account is created at the first IMAP or SMTP login (JIT), so the
answer only has to satisfy the login rules of `config.accounts`. Errors carry `{"reason"}`,
which Delta Chat shows to the user as the error text.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from relay.config import Config
from relay.onboarding import dcaccount_url, dclogin_url, new_credentials
from relay.web.types import Request, Response, json_response, redirect

if TYPE_CHECKING:
    from relay.app import App

MAX_ATTEMPTS = 5  # random 9-character names practically never collide; this bounds bad luck


def needs_dclogin(config: Config) -> bool:
    """Clients cannot POST to /new over self-signed HTTPS; they need a complete login link."""
    return config.is_lan or config.tls.mode == "self-signed"


def registration_refusal(app: App) -> tuple[int, str] | None:
    accounts = app.config.accounts
    if not (accounts.registration_open and accounts.jit):
        return 403, "Registration of new accounts on this relay is closed."
    if app.store.storage_full():
        return 503, "This relay is full and cannot take new accounts right now."
    return None


def rate_limited(app: App, ip: str) -> int | None:
    """None when `ip` may have new credentials now, else the seconds to wait."""
    limit = app.new_account_rate
    if limit.allow(ip):
        return None
    return max(1, math.ceil(limit.retry_after(ip)))


async def fresh_credentials(app: App) -> tuple[str, str] | None:
    """An address never issued before and not taken, with its password."""
    for _ in range(MAX_ATTEMPTS):
        addr, password = new_credentials(app.config)
        if app.issued.remember(addr) and not await app.store.account_exists(addr):
            return addr, password
    return None


async def new_account(request: Request, app: App) -> Response:
    config = app.config
    if request.method in ("GET", "HEAD") and not needs_dclogin(config):
        return redirect(dcaccount_url(config))
    wait = rate_limited(app, request.peer.ip)
    if wait is not None:
        response = json_response(
            429, {"reason": "Too many new accounts requested; try again soon."}
        )
        response.headers.append(("Retry-After", str(wait)))
        return response
    refusal = registration_refusal(app)
    if refusal is not None:
        status, reason = refusal
        return json_response(status, {"reason": reason})
    credentials = await fresh_credentials(app)
    if credentials is None:
        return json_response(503, {"reason": "Could not find a free address; try again."})
    addr, password = credentials
    answer = {"email": addr, "password": password}
    if needs_dclogin(config):
        answer["dclogin_url"] = dclogin_url(config, addr, password)
    app.log.info("credentials-issued", ip=app.log.redact(request.peer.ip))
    return json_response(200, answer)
