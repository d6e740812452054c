"""Device tokens for push notifications: the data model, apart from any protocol.

Delta Chat sets its token with IMAP SETMETADATA on INBOX /private/devicetoken (WebIMAP has no
way to set one); the notifier reads the live ones. The anchor's semantics: setting a token adds it (or
refreshes one already known), tokens not set again for 90 days are dropped, stamps in the future
are invalid. Stored as one metadata value, one "stamp token" line per device, changed with one
atomic read-modify-write in the store, so two devices registering at once both stay.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay.store import MailStore

DEVICETOKEN = "/private/devicetoken"
TOKEN_LIFETIME = 90 * 24 * 3600
FUTURE_TOLERANCE = 60  # seconds of clock difference a stamp may be ahead
MAX_TOKENS = 20  # one per device; bounded so a client cannot grow the entry without limit
MAX_TOKEN_LENGTH = 4096


def valid_token(token: str) -> bool:
    return bool(token) and len(token) <= MAX_TOKEN_LENGTH and not any(c.isspace() for c in token)


def live_entries(raw: str | None, now: float) -> list[tuple[float, str]]:
    """(stamp, token) of the tokens still valid at `now`, in the order first set."""
    entries = []
    for line in (raw or "").splitlines():
        stamp, _, token = line.partition(" ")
        try:
            when = float(stamp)
        except ValueError:
            continue
        if token and now - TOKEN_LIFETIME < when <= now + FUTURE_TOLERANCE:
            entries.append((when, token))
    return entries


def with_token(raw: str | None, token: str, now: float) -> str:
    """The stored value after setting `token` at `now`."""
    entries = live_entries(raw, now)
    if any(t == token for _, t in entries):
        entries = [(now if t == token else w, t) for w, t in entries]  # refresh, keep order
    else:
        entries.append((now, token))
    return "\n".join(f"{w:.0f} {t}" for w, t in entries[-MAX_TOKENS:])


async def read_tokens(store: MailStore, addr: str, now: float | None = None) -> list[str]:
    """The live device tokens of an account (what the push notifier sends to)."""
    now = time.time() if now is None else now
    return [token for _, token in live_entries(await store.get_metadata(addr, DEVICETOKEN), now)]


async def add_token(store: MailStore, addr: str, token: str, now: float | None = None) -> None:
    when = time.time() if now is None else now
    await store.update_metadata(addr, DEVICETOKEN, lambda raw: with_token(raw, token, when))


def without_token(raw: str | None, token: str) -> str | None:
    """The stored value after removing `token` (None when no token is left)."""
    lines = [line for line in (raw or "").splitlines() if line.partition(" ")[2] != token]
    return "\n".join(lines) or None


async def remove_token(store: MailStore, addr: str, token: str) -> None:
    """What a 410 from the notification proxy asks for: that token is no good any more."""
    await store.update_metadata(addr, DEVICETOKEN, lambda raw: without_token(raw, token))


async def clear_tokens(store: MailStore, addr: str) -> None:
    await store.set_metadata(addr, DEVICETOKEN, None)
