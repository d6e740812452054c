"""A wrong clock deletes nothing: a Pi boots with an old time until NTP answers, and a clock can
be set years off. Expiry waits for a confirmed clock, believes no jump ahead of the monotonic
clock, and sets stamps from the future back to now (they then age normally)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from relay.log import Logger
from relay.outbound.worker import Outbound
from relay.store import QueueEntry, Store, open_store
from tests.core.conftest import open_app
from tests.helpers import deliver_to, free_ports, make_account
from tests.store.helpers import Clock, addr, store_config

PASSWORD = "correct-horse-1"
YEARS_5 = 5 * 365


def message(n: int) -> bytes:
    return f"Subject: {n}\r\n\r\nhello\r\n".encode()


async def inbox(store: Store, who: str) -> list[int]:
    return [m.uid for m in (await store.snapshot(who, "INBOX")).messages]


async def test_a_jump_five_years_forward_expires_nothing(tmp_path: Path) -> None:
    clock = Clock()
    config = store_config(tmp_path / "data")
    async with open_store(
        config, Logger(level="error"), **clock.store_clocks(), expiry_interval=None
    ) as s:
        bob = addr("bob000001")
        assert await make_account(s, bob, PASSWORD)
        await deliver_to(s, [bob], message(1))
        assert (await s.expire()).messages == 0  # the first confirmed reading
        clock.jump_days(YEARS_5)
        result = await s.expire()
        assert (result.messages, result.accounts) == (0, 0)
        assert await inbox(s, bob) == [1]
        # Real time passing still expires: 21 days later (retention is 20) it goes.
        clock.advance_days(21)
        assert (await s.expire()).messages == 1
        assert await inbox(s, bob) == []


async def test_a_jump_five_years_back_expires_nothing_and_future_stamps_age_from_now(
    tmp_path: Path,
) -> None:
    clock = Clock()
    config = store_config(tmp_path / "data")
    async with open_store(
        config, Logger(level="error"), **clock.store_clocks(), expiry_interval=None
    ) as s:
        bob = addr("bob000001")
        assert await make_account(s, bob, PASSWORD)  # logged in "today"
        await deliver_to(s, [bob], message(1))
        clock.jump_days(-YEARS_5)  # the clock is set back: everything is in its future
        result = await s.expire()
        assert (result.messages, result.accounts, result.clamped) == (0, 0, 2)
        assert await inbox(s, bob) == [1]
        [meta] = (await s.snapshot(bob, "INBOX")).messages
        assert meta.internal_date.timestamp() == clock.now  # clamped to the new now
        # It then ages from now: not gone after 19 days, gone after 21, and so is the account
        # after its inactivity period counted from now, not from five years ahead.
        clock.advance_days(19)
        assert (await s.expire()).messages == 0
        clock.advance_days(2)
        assert (await s.expire()).messages == 1
        clock.advance_days(config.retention.delete_inactive_users_after + 1)
        assert (await s.expire()).accounts == 1


async def test_nothing_expires_until_the_clock_is_confirmed(tmp_path: Path) -> None:
    clock = Clock()
    clock.synced = False  # booted, NTP has not answered yet
    config = store_config(tmp_path / "data")
    async with open_store(
        config, Logger(level="error"), **clock.store_clocks(), expiry_interval=None
    ) as s:
        bob = addr("bob000001")
        assert await make_account(s, bob, PASSWORD)
        await deliver_to(s, [bob], message(1))
        clock.advance_days(30)  # a month without NTP: whatever the clock says, nothing goes
        assert (await s.expire()).messages == 0
        assert await inbox(s, bob) == [1]
        clock.synced = True  # NTP answered: the message's real age now counts
        assert (await s.expire()).messages == 1


async def test_queued_mail_is_retried_after_the_clock_went_back(tmp_path: Path) -> None:
    clock = Clock()
    async with open_app(store_config(tmp_path / "data"), clock) as app:
        outbound = Outbound(app, clock=clock)
        qid = await app.store.enqueue(addr("alice0001"), ["bob@example.org"], message(1))
        await app.store.queue_update(
            qid,
            attempts=3,
            next_attempt=datetime.fromtimestamp(clock.now + 600, UTC),
            last_error="",
        )
        clock.jump_days(-YEARS_5)
        started: list[str] = []

        class Nursery:
            def start_soon(self, fn: object, entry: QueueEntry) -> None:
                started.append(entry.id)

        await outbound._start_due(Nursery())  # type: ignore[arg-type]
        assert started == [qid]  # not left waiting five years


async def test_a_clock_jumping_ahead_does_not_bounce_queued_mail(tmp_path: Path) -> None:
    clock = Clock()
    config = store_config(tmp_path / "data")
    closed = free_ports(1)[0]  # nothing listens: every attempt is a temporary failure
    federation = dataclasses.replace(
        config.federation, peer_https_port=closed, peer_smtp_port=closed
    )
    config = dataclasses.replace(config, federation=federation)
    async with open_app(config, clock) as app:
        outbound = Outbound(app, clock=clock)
        bob = "bob000001@[127.0.0.9]"
        await app.store.enqueue(addr("alice0001"), [bob], message(1))
        clock.jump_days(YEARS_5)
        [entry] = await app.store.queue_list()
        await outbound.attempt(entry)
        [entry] = await app.store.queue_list()  # still there, to be retried on schedule
        assert entry.attempts == 1
        # Once the retries really span the lifetime, it is given up (and bounced).
        await app.store.queue_update(
            entry.id, attempts=500, next_attempt=entry.next_attempt, last_error=entry.last_error
        )
        [entry] = await app.store.queue_list()
        await outbound.attempt(entry)
        assert await app.store.queue_list() == []
