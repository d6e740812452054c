"""TURN credentials of the REST scheme (the one chatmail-turn, coturn's `use-auth-secret` and the
Delta Chat core agree on): username = expiry time in Unix seconds, password =
base64(HMAC-SHA1(secret, username)). coturn's "expiry:name" usernames are accepted too.

The secret is `[turn] secret` when set; otherwise one is generated at the first use and kept in
the data dir (`turn-secret`, mode 0600), so credentials handed out stay valid across restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from relay.durable import load_or_create_secret as _load_or_create

VALIDITY = 5 * 24 * 3600  # the client re-reads METADATA 12 h before the expiry
SECRET_FILE = "turn-secret"


def load_or_create_secret(data_dir: Path, configured: str = "") -> bytes:
    """The shared secret: the configured one, or the data dir's (made once, durably).

    Read at every use (a few bytes, once per IMAP session and service start), so a factory
    reset that empties the data dir also ends the old secret.
    """
    if configured:
        return configured.encode()
    return _load_or_create(Path(data_dir) / SECRET_FILE)


def password_for(secret: bytes, username: str) -> str:
    return base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest()).decode()


def mint(secret: bytes, now: float, validity: int = VALIDITY) -> tuple[str, str]:
    """(username, password) valid until now + validity."""
    username = str(int(now) + validity)
    return username, password_for(secret, username)


def expiry_of(username: str) -> int | None:
    """The expiry a REST username carries ("1767225600" or "1767225600:name"), or None."""
    stamp = username.split(":", 1)[0]
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        return None
    return int(stamp)
