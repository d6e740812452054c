"""Quota (chatmail behaviour) and expiry with an injected clock; segments are unlinked whole."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from relay.config import Config
from relay.log import Logger
from relay.store import QuotaExceeded, Store, open_store
from tests.helpers import deliver_to, make_account
from tests.store.conftest import PASSWORD
from tests.store.helpers import Clock, addr, store_config, with_limits

KIB = 1024


def message(n: int, size: int) -> bytes:
    head = f"Subject: {n}\r\n\r\n".encode()
    return head + b"x" * (size - len(head))


async def make(store: Store, *names: str) -> list[str]:
    out = []
    for name in names:
        a = addr(name)
        assert await make_account(store, a, PASSWORD)
        out.append(a)
    return out


async def test_quota_expires_oldest_mail_but_not_mail_younger_than_a_day(
    config: Config, clock: Clock
) -> None:
    config = with_limits(config, max_mailbox_size=100 * KIB)
    async with open_store(
        config, Logger(level="error"), **clock.store_clocks(), expiry_interval=None
    ) as s:
        [bob, carol] = await make(s, "bob000001", "carol0001")
        with pytest.raises(QuotaExceeded):  # bigger than the whole quota
            await deliver_to(s, [bob], message(0, 101 * KIB))
        for n in range(3):  # 60 KiB, two days old by the time the next mail comes
            await deliver_to(s, [bob], message(n, 20 * KIB))
        clock.advance_days(2)
        # crosses 75 %: the oldest go, down to 70 %
        await deliver_to(s, [bob], message(3, 20 * KIB))
        snap = await s.snapshot(bob, "INBOX")
        assert [m.uid for m in snap.messages] == [2, 3, 4]
        assert await s.quota_usage(bob) == 60 * KIB
        for n in range(4, 8):  # today's mail is never expired to make room...
            await deliver_to(s, [bob], message(n, 20 * KIB))
        before = await s.snapshot(bob, "INBOX")
        with pytest.raises(QuotaExceeded):  # ...so a full mailbox refuses
            await deliver_to(s, [carol, bob], message(9, 20 * KIB))
        # the refusal wrote nothing for bob (no room made, nothing stored); carol has hers
        assert await s.snapshot(bob, "INBOX") == before
        assert len((await s.snapshot(carol, "INBOX")).messages) == 1
        assert await s.quota_usage(bob) <= 100 * KIB


async def test_old_large_seen_and_inactive_expire_and_segments_go(
    tmp_path: Path, config: Config, clock: Clock, backend: str
) -> None:
    segs = tmp_path / "data" / "store" / "segments"
    log = Logger(level="error")
    async with open_store(
        config, log, **clock.store_clocks(), expiry_interval=None, segment_size=4096
    ) as s:
        [dave, erin, idle] = await make(s, "dave00001", "erin00001", "idleuser1")
        await deliver_to(s, [dave], message(1, 2 * KIB))  # small: stays 20 days
        await deliver_to(s, [dave], message(2, 300_000))  # large, will be seen
        await deliver_to(s, [dave], message(3, 300_000))  # large, never seen
        await s.set_flags(dave, "INBOX", [2], ["\\Seen"], "add")
        await s.enqueue(dave, ["x@example.org"], message(4, 2 * KIB))  # pins its segment
        clock.advance_days(8)
        for a in (dave, erin):
            await s.touch_login(a)  # a login keeps the account alive
        await deliver_to(s, [erin], message(5, 2 * KIB))
        result = await s.expire()
        assert result.messages == 1 and result.accounts == 0
        assert [m.uid for m in (await s.snapshot(dave, "INBOX")).messages] == [1, 3]
        clock.advance_days(13)  # 21 days after the first mail
        for a in (dave, erin):
            await s.touch_login(a)  # a login keeps the account alive
        files_before = sorted(segs.iterdir()) if backend == "embedded" else []
        result = await s.expire()
        assert result.messages == 2  # dave's two remaining, 21 days old
        assert (await s.snapshot(dave, "INBOX")).messages == []
        assert len((await s.snapshot(erin, "INBOX")).messages) == 1  # 13 days old
        if backend == "embedded":  # PostgreSQL deletes each body with its last reference
            assert result.segments > 0
            assert len(sorted(segs.iterdir())) < len(files_before)
        assert len(await s.queue_list()) == 1  # the queued body is still readable
        [entry] = await s.queue_list()
        assert await s.queue_read(entry.id) == message(4, 2 * KIB)
        clock.advance_days(70)  # idle user: 91 days without login
        await s.touch_login(dave)
        result = await s.expire()
        assert result.accounts == 1  # idle: 91 days; erin: 70 days since her last login
        assert await s.account_exists(dave) and await s.account_exists(erin)
        assert not await s.account_exists(idle)


async def test_an_expiry_pass_with_nothing_due_writes_nothing(tmp_path: Path) -> None:
    config = store_config(tmp_path / "data")
    store_dir = tmp_path / "data" / "store"
    async with open_store(config, Logger(level="error"), expiry_interval=None) as s:
        [frank] = await make(s, "frank0001")
        await deliver_to(s, [frank], message(1, 2 * KIB))
        stamps = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in store_dir.rglob("*")}
        batches = s._writer.batches
        for _ in range(3):
            result = await s.expire()
            assert (result.accounts, result.messages, result.segments) == (0, 0, 0)
        assert s._writer.batches == batches
        assert stamps == {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in store_dir.rglob("*")}


async def test_quota_limit_follows_a_config_reload(store: Store, alice: str) -> None:
    await deliver_to(store, [alice], message(1, 10 * KIB))
    store.config = dataclasses.replace(
        store.config, limits=dataclasses.replace(store.config.limits, max_mailbox_size=8 * KIB)
    )
    with pytest.raises(QuotaExceeded):
        await deliver_to(store, [alice], message(2, 10 * KIB))
