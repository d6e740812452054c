"""Per-relay IMAP bookkeeping: open connections per IP and per account, login throttling."""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from relay.app import App
from relay.ratelimit import AuthThrottle

# The chatmail default allows a handful of devices per account plus their probe connections.
DEFAULT_MAX_PER_ACCOUNT = 20
DEFAULT_MAX_PER_IP = 200


class TooManyConnections(Exception):
    pass


class ConnectionLimits:
    def __init__(self) -> None:
        self.per_ip: Counter[str] = Counter()
        self.per_account: Counter[str] = Counter()
        self.throttle = AuthThrottle()

    @contextmanager
    def connection(self, ip: str, cap: int) -> Iterator[None]:
        if self.per_ip[ip] >= cap:
            raise TooManyConnections(ip)
        self.per_ip[ip] += 1
        try:
            yield
        finally:
            _release(self.per_ip, ip)

    def claim_account(self, addr: str, cap: int) -> bool:
        if self.per_account[addr] >= cap:
            return False
        self.per_account[addr] += 1
        return True

    def release_account(self, addr: str) -> None:
        _release(self.per_account, addr)


def _release(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


_BY_APP: dict[int, ConnectionLimits] = {}


def limits_for(app: App) -> ConnectionLimits:
    """One ConnectionLimits per running relay (tests run several in one process)."""
    found = _BY_APP.get(id(app))
    if found is None:
        found = _BY_APP[id(app)] = ConnectionLimits()
        shared = getattr(app, "auth_throttle", None)  # shared with SMTP once the App offers it
        if isinstance(shared, AuthThrottle):
            found.throttle = shared
        weakref.finalize(app, _BY_APP.pop, id(app), None)
    return found


def max_per_ip(app: App) -> int:
    return getattr(app.config.limits, "max_connections_per_ip", DEFAULT_MAX_PER_IP)


def max_per_account(app: App) -> int:
    return getattr(app.config.limits, "max_connections_per_account", DEFAULT_MAX_PER_ACCOUNT)
