"""Rate limits shared by the protocols: GCRA for sending and requests, and login throttling."""

from __future__ import annotations

import ipaddress
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio

MAX_TRACKED_KEYS = 100_000  # bounded memory: the least recently used keys are forgotten


class GCRA:
    """Generic cell rate algorithm: `per_minute` sustained, `burst` at once (like `governor`)."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.interval = 60.0 / per_minute
        self.tolerance = self.interval * (burst - 1)
        self.clock = clock
        self._tat: OrderedDict[str, float] = OrderedDict()  # theoretical arrival time per key

    def allow(self, key: str) -> bool:
        now = self.clock()
        tat = max(self._tat.get(key, now), now)
        if tat - now > self.tolerance:
            return False
        self._remember(key, tat + self.interval)
        return True

    def retry_after(self, key: str) -> float:
        """Seconds until `allow(key)` would succeed."""
        now = self.clock()
        tat = self._tat.get(key, now)
        return max(0.0, tat - self.tolerance - now)

    def _remember(self, key: str, tat: float) -> None:
        self._tat[key] = tat
        self._tat.move_to_end(key)
        while len(self._tat) > MAX_TRACKED_KEYS:
            self._tat.popitem(last=False)


class ReloadableGCRA:
    """A GCRA whose (per_minute, burst) come from the live config: rebuilt when they change."""

    def __init__(self, params: Callable[[Any], tuple[float, int]]) -> None:
        self.params = params
        self._limiter: GCRA | None = None
        self._current: tuple[float, int] | None = None

    def get(self, config: Any) -> GCRA:
        params = self.params(config)
        if self._limiter is None or params != self._current:
            self._limiter, self._current = GCRA(*params), params
        return self._limiter


def client_key(ip: str) -> str:
    """One key per client: an IPv6 client usually owns a whole /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"ip:{ip}"
    if address.version == 6:
        return f"ip:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"ip:{address}"


class TooManyFailures(Exception):
    """Raised instead of attempting a login while a key is locked out."""


class AuthThrottle:
    """Failed logins cost time: each failure per client and per account delays the next attempt.

    Failures are counted per client network (an IPv4 address, an IPv6 /64) and per account;
    after `free_failures` the next attempt waits `base_delay * 2**(n - free_failures)` seconds
    (capped). A client beyond `lockout_after` failures is refused outright until `window`
    seconds pass without failures. Accounts are only slowed down, never locked: a lockout per
    account would let anyone lock a user out of their own mailbox.
    """

    def __init__(
        self,
        *,
        free_failures: int = 3,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        lockout_after: int = 20,
        window: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lockout_after = lockout_after
        self.window = window
        self.clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def _count(self, key: str) -> int:
        count, last = self._failures.get(key, (0, 0.0))
        if count and self.clock() - last > self.window:
            del self._failures[key]
            return 0
        return count

    async def before_attempt(self, ip: str, account: str | None = None) -> None:
        by_client = self._count(client_key(ip))
        if by_client >= self.lockout_after:
            raise TooManyFailures(ip)
        worst = max(by_client, self._count(f"acct:{account}") if account else 0)
        if worst > self.free_failures:
            exponent = worst - self.free_failures - 1
            await trio.sleep(min(self.max_delay, self.base_delay * 2**exponent))

    def record_failure(self, ip: str, account: str | None = None) -> None:
        for key in (client_key(ip), f"acct:{account}" if account else None):
            if key is None:
                continue
            self._failures[key] = (self._count(key) + 1, self.clock())
            self._failures.move_to_end(key)
        while len(self._failures) > MAX_TRACKED_KEYS:
            self._failures.popitem(last=False)

    def record_success(self, ip: str, account: str | None = None) -> None:
        self._failures.pop(f"acct:{account}", None)


class ConnectionCounter:
    """Open connections per key (a client IP, an account), refusing new ones beyond a cap."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    def count(self, key: str) -> int:
        return self._open[key]

    def claim(self, key: str, cap: int) -> bool:
        if self._open[key] >= cap:
            return False
        self._open[key] += 1
        return True

    def release(self, key: str) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    @contextmanager
    def holding(self, key: str, cap: int) -> Iterator[bool]:
        """Count a connection while it lasts; yields False (and counts nothing) over the cap."""
        admitted = self.claim(key, cap)
        try:
            yield admitted
        finally:
            if admitted:
                self.release(key)


class ByteBudget:
    """Bytes of incoming message bodies held in memory at once, across every connection.

    Each protocol charges what it buffers as it arrives and gives it back when the message is
    stored or refused. Without one shared budget, a few hundred connections each sending a
    message of the maximum size would exhaust a small board's memory.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.total:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        self.used = max(0, self.used - size)
