"""Password hashing: Argon2id in the PHC string format, plus a cache for repeated logins.

Argon2id (RFC 9106) with m=19 MiB, t=2, p=1 is OWASP's first recommendation; it costs about
30 ms of CPU per hash on the development machine (measured by bench/password_hash), inside the 50 ms
budget. The parameters are stored in each hash, so they can be raised later without breaking
existing accounts. Delta Chat logs in on every IMAP and SMTP connection, so after one slow check a
keyed fast digest of the accepted password is kept in memory (never on disk): a correct repeat
login costs microseconds, a wrong password still pays the full Argon2id price.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections import OrderedDict

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

MEMORY_KIB = 19 * 1024
ITERATIONS = 2
LANES = 1
SALT_BYTES = 16
HASH_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, m: int, t: int, p: int, length: int) -> bytes:
    kdf = Argon2id(salt=salt, length=length, iterations=t, lanes=p, memory_cost=m)
    return kdf.derive(password.encode("utf-8"))


def hash_password(password: str) -> str:
    salt = os.urandom(SALT_BYTES)
    digest = _derive(password, salt, MEMORY_KIB, ITERATIONS, LANES, HASH_BYTES)
    return f"$argon2id$v=19$m={MEMORY_KIB},t={ITERATIONS},p={LANES}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of password against a PHC string; False for anything malformed."""
    try:
        _, alg, version, params, salt_b64, digest_b64 = stored.split("$")
        if alg != "argon2id" or version != "v=19":
            return False
        p = dict(kv.split("=", 1) for kv in params.split(","))
        expected = _unb64(digest_b64)
        got = _derive(
            password, _unb64(salt_b64), int(p["m"]), int(p["t"]), int(p["p"]), len(expected)
        )
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(got, expected)


class LoginCache:
    """addr -> (stored hash, keyed digest of the password that matched it); bounded LRU."""

    def __init__(self, size: int = 4096) -> None:
        self._key = os.urandom(32)
        self._size = size
        self._entries: OrderedDict[str, tuple[str, bytes]] = OrderedDict()

    def _digest(self, addr: str, password: str) -> bytes:
        return hmac.new(self._key, f"{addr}\0{password}".encode(), hashlib.sha256).digest()

    def check(self, addr: str, password: str, stored: str) -> bool:
        entry = self._entries.get(addr)
        if entry is None or entry[0] != stored:
            return False
        self._entries.move_to_end(addr)
        return hmac.compare_digest(entry[1], self._digest(addr, password))

    def remember(self, addr: str, password: str, stored: str) -> None:
        self._entries[addr] = (stored, self._digest(addr, password))
        self._entries.move_to_end(addr)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, addr: str) -> None:
        self._entries.pop(addr, None)
