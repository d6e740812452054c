"""Per-relay IMAP bookkeeping: open connections per IP and per account."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from relay.app import App


class TooManyConnections(Exception):
    pass


class ConnectionLimits:
    def __init__(self) -> None:
        self.per_ip: Counter[str] = Counter()
        self.per_account: Counter[str] = Counter()

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


def limits_for(app: App) -> ConnectionLimits:
    return app.service_state("imap", ConnectionLimits)


def max_per_ip(app: App) -> int:
    return app.config.limits.max_connections_per_ip


def max_per_account(app: App) -> int:
    return app.config.limits.max_connections_per_account
