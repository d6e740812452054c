"""The shared rate limiters: GCRA for sending, and the login throttle."""

from __future__ import annotations

import pytest
import trio

from relay.ratelimit import GCRA, AuthThrottle, TooManyFailures


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_gcra_allows_the_burst_then_one_per_interval() -> None:
    clock = Clock()
    limit = GCRA(per_minute=60, burst=10, clock=clock)
    assert [limit.allow("a") for _ in range(11)] == [True] * 10 + [False]
    assert limit.allow("b")  # another sender has its own bucket
    assert limit.retry_after("a") == pytest.approx(1.0)
    clock.now += 1.0
    assert limit.allow("a") and not limit.allow("a")


async def test_a_client_is_locked_out_but_the_account_is_only_slowed() -> None:
    clock = Clock()
    throttle = AuthThrottle(free_failures=0, base_delay=0.001, lockout_after=3, clock=clock)
    for _ in range(3):
        await throttle.before_attempt("192.0.2.1", "alice@x")
        throttle.record_failure("192.0.2.1", "alice@x")
    with pytest.raises(TooManyFailures):
        await throttle.before_attempt("192.0.2.1", "bob@x")
    # Alice herself, from elsewhere, still gets in (after a short delay).
    with trio.fail_after(30):
        await throttle.before_attempt("198.51.100.7", "alice@x")
    clock.now += 601
    await throttle.before_attempt("192.0.2.1", "bob@x")  # the window passed


async def test_ipv6_clients_are_counted_per_64() -> None:
    throttle = AuthThrottle(free_failures=0, base_delay=0.001, lockout_after=2)
    throttle.record_failure("2001:db8:1:2::10")
    throttle.record_failure("2001:db8:1:2:ffff::99")
    with pytest.raises(TooManyFailures):
        await throttle.before_attempt("2001:db8:1:2::abcd")
    await throttle.before_attempt("2001:db8:1:3::1")  # another network
