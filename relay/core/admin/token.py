"""The admin API's bearer token and the throttle on failed attempts.

The token is 64 hex characters in `<data_dir>/admin_token` (mode 0600), made at the first start
or by `relay admin-token`; whoever can read the data dir is the admin. Comparison is in
constant time. After MAX_FAILURES failed attempts within a minute an address is refused even
with the right token until the minute has passed, so the token cannot be guessed online.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections import deque
from pathlib import Path

from relay.config import Config
from relay.durable import make_dirs, write_atomically

TOKEN_FILE = "admin_token"
MAX_FAILURES = 10
WINDOW = 60.0  # seconds
MAX_TRACKED = 10_000  # addresses remembered; the oldest failures are forgotten beyond it


def token_path(config: Config) -> Path:
    return config.data_dir / TOKEN_FILE


def ensure_token(config: Config) -> str:
    """The admin token, made on first use."""
    path = token_path(config)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if len(token) < 32:
        token = secrets.token_hex(32)
        # Owned like the data dir: `relay admin-token` run as root must not lock out the relay.
        make_dirs(config.data_dir)
        stat = config.data_dir.stat()
        owner = (stat.st_uid, stat.st_gid) if os.geteuid() == 0 else None
        write_atomically(path, f"{token}\n".encode(), mode=0o600, owner=owner)
    return token


def token_matches(config: Config, offered: str) -> bool:
    try:
        token = token_path(config).read_text().strip()
    except OSError:
        return False
    return bool(token) and hmac.compare_digest(token.encode(), offered.encode())


class FailedAuth:
    """Failed authentications per client address over the last minute."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.failures: dict[str, deque[float]] = {}

    def _recent(self, ip: str) -> deque[float]:
        times = self.failures.get(ip, deque())
        cutoff = self.clock() - WINDOW
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            self.failures.pop(ip, None)
        return times

    def blocked(self, ip: str) -> bool:
        return len(self._recent(ip)) >= MAX_FAILURES

    def failed(self, ip: str) -> None:
        if ip not in self.failures and len(self.failures) >= MAX_TRACKED:
            del self.failures[next(iter(self.failures))]
        self.failures.setdefault(ip, deque()).append(self.clock())
