"""Logging in to WebIMAP: the core's authenticate(), as IMAP and SMTP do.

So the same throttle (by client network and by account), the same JIT rule (a first login
creates the account where IMAP's would) and the same login cache apply; the client learns
madmail's words only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.core.accounts import authenticate

from .actions import ActionError, Caller

if TYPE_CHECKING:
    from relay.app import App

MISSING = "missing credentials"
FAILED = "authentication failed"
TLS_REQUIRED = "https required: passwords are accepted over TLS only"


async def login(
    app: App, ip: str, email: str | None, password: str | None, *, service: str
) -> Caller:
    """The logged-in caller, or ActionError 401/403/429/503. No password is taken over a
    connection without TLS (plain HTTP serves the pages in LAN mode, as IMAP without
    STARTTLS refuses LOGIN): the client is told to use https, and nothing is checked."""
    if service != "https":
        raise ActionError(403, TLS_REQUIRED)
    if not email or not password:
        raise ActionError(401, MISSING)
    outcome = await authenticate(app, ip, email, password, via="webimap")
    if outcome.verdict == "throttled":
        raise ActionError(429, "too many failed logins, try again later")
    if outcome.verdict == "unavailable":
        raise ActionError(503, "insufficient system storage, try again later")
    if not outcome.ok:
        raise ActionError(401, FAILED)
    return Caller(app, outcome.addr)
