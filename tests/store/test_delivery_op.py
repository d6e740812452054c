"""Store.commit_delivery(Delivery): local copies, the queue entry and the failure report are ONE
operation, all or nothing: one batch and one fdatasync (embedded), one transaction (PostgreSQL)."""

from __future__ import annotations

import errno

import pytest
import trio

from relay.config import Config
from relay.log import Logger
from relay.store import (
    Delivery,
    DeliveryReport,
    MailboxChange,
    NoSuchAccount,
    QuotaExceeded,
    StorageFull,
    Store,
    StoreError,
    open_store,
    ops_queue,
)
from tests.helpers import deliver_to
from tests.store.helpers import Batches, Clock, addr, with_limits

KIB = 1024
REMOTE = "someone@example.org"
LOCAL_COPY = b"Subject: hi\r\n\r\nlocal copy\r\n"
REMOTE_COPY = b"DKIM-Signature: x\r\nSubject: hi\r\n\r\nremote copy\r\n"


async def accounts(store: Store, *names: str) -> list[str]:
    out = []
    for name in names:
        a = addr(name)
        assert await store.add_account(a, "$argon2id$not-a-real-hash") == "created"
        out.append(a)
    return out


async def inbox(store: Store, a: str) -> list[bytes]:
    snap = await store.snapshot(a, "INBOX")
    return [await store.read(a, "INBOX", m.uid) for m in snap.messages]


class Reports:
    """A report builder that records what it was asked about."""

    def __init__(self, data: bytes | None = b"Subject: report\r\n\r\nfailed\r\n") -> None:
        self.data = data
        self.calls: list[dict[str, StoreError]] = []

    def __call__(self, failed: dict[str, StoreError]) -> DeliveryReport | None:
        self.calls.append(failed)
        return None if self.data is None else DeliveryReport(self.data)


async def test_local_and_remote_recipients_cost_one_batch(store: Store) -> None:
    bob, carol = await accounts(store, "bob000001", "carol0001")
    batches = Batches(store)
    out = await store.commit_delivery(
        Delivery(
            sender=REMOTE,
            local=(bob.upper(), carol, bob),  # any case, duplicates: one copy each
            local_data=LOCAL_COPY,
            remote=("x@example.net", "y@example.net"),
            remote_data=REMOTE_COPY,
        )
    )
    batches.check(1)
    assert out.delivered == [bob, carol] and out.failed == {} and out.report == ""
    assert out.queued == ["x@example.net", "y@example.net"]
    assert await inbox(store, bob) == [LOCAL_COPY] and await inbox(store, carol) == [LOCAL_COPY]
    [entry] = await store.queue_list()
    assert entry.id == out.queue_id and entry.recipients == out.queued
    assert entry.sender == REMOTE
    assert await store.queue_read(entry.id) == REMOTE_COPY


async def test_over_quota_and_remote_give_failure_queue_entry_and_report_in_one_batch(
    config: Config, clock: Clock
) -> None:
    config = with_limits(config, max_mailbox_size=100 * KIB)
    async with open_store(
        config, Logger(level="error"), **clock.store_clocks(), expiry_interval=None
    ) as s:
        bob, carol = await accounts(s, "bob000001", "carol0001")
        await deliver_to(s, [bob], b"o" * (30 * KIB))  # old: may go to make room
        clock.advance_days(3)
        await deliver_to(s, [bob], b"n" * (60 * KIB))  # today's: always spared
        bob_before = await s.snapshot(bob, "INBOX")
        reports = Reports()
        batches = Batches(s)
        big = b"m" * (50 * KIB)
        async with s.watch(bob) as bob_events, s.watch(carol) as carol_events:
            out = await s.commit_delivery(
                Delivery(REMOTE, (bob, carol), big, (REMOTE,), big, report=reports)
            )
            batches.check(1)
            assert carol_events.receive_nowait() == MailboxChange("INBOX", "exists", (1,))
            with pytest.raises(trio.WouldBlock):
                bob_events.receive_nowait()  # not even the expunge made for it happened
        assert out.delivered == [carol] and out.queued == [REMOTE]
        assert list(out.failed) == [bob] and isinstance(out.failed[bob], QuotaExceeded)
        assert reports.calls == [out.failed]
        assert out.report == "queued"
        # the old message that would have made room for bob is still there
        assert await s.snapshot(bob, "INBOX") == bob_before
        assert out.queue_id is not None
        queue = {e.id: e for e in await s.queue_list()}
        assert set(queue[out.queue_id].recipients) == {REMOTE}
        [report] = [e for e in queue.values() if e.id != out.queue_id]
        assert (report.sender, report.recipients) == ("", [REMOTE])  # null sender: no loops
        assert await s.queue_read(report.id) == reports.data


async def test_a_failing_enqueue_leaves_nothing_and_a_retry_stores_one_copy(
    store: Store, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob, carol = await accounts(store, "bob000001", "carol0001")
    delivery = Delivery(REMOTE, (bob, carol), LOCAL_COPY, ("x@example.net",), REMOTE_COPY)

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("injected")

    if backend == "postgresql":
        monkeypatch.setattr("relay.store.postgres.queue.enqueue", broken)
    else:
        monkeypatch.setattr(ops_queue, "enqueue", broken)
    batches = Batches(store)
    async with store.watch(bob) as events:
        with pytest.raises(RuntimeError, match="injected"):
            await store.commit_delivery(delivery)
        with pytest.raises(trio.WouldBlock):
            events.receive_nowait()  # no wake-up for a copy that was never stored
    batches.check(0)
    assert await inbox(store, bob) == [] and await inbox(store, carol) == []
    assert await store.queue_list() == []
    monkeypatch.undo()
    out = await store.commit_delivery(delivery)
    assert out.delivered == [bob, carol] and out.queue_id is not None
    assert await inbox(store, bob) == [LOCAL_COPY] and await inbox(store, carol) == [LOCAL_COPY]
    assert len(await store.queue_list()) == 1


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), StorageFull),
        (OSError(errno.EIO, "Input/output error"), StoreError),
    ],
    ids=["disk full", "I/O error"],
)
@pytest.mark.embedded_only
async def test_a_failing_log_write_leaves_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch, error: OSError, raised: type[StoreError]
) -> None:
    [bob] = await accounts(store, "bob000001")
    delivery = Delivery(REMOTE, (bob,), LOCAL_COPY, ("x@example.net",), REMOTE_COPY)

    def failing(batch: object) -> None:
        raise error

    monkeypatch.setattr(store._seglog, "write", failing)
    with pytest.raises(raised, match=str(error.strerror)):
        await store.commit_delivery(delivery)
    monkeypatch.undo()
    assert await inbox(store, bob) == [] and await store.queue_list() == []
    await store.commit_delivery(delivery)
    assert await inbox(store, bob) == [LOCAL_COPY] and len(await store.queue_list()) == 1


async def test_every_local_recipient_unknown_writes_nothing(store: Store) -> None:
    reports = Reports()
    batches = Batches(store)
    nobody, ghost = addr("nobody001"), addr("ghost0001")
    out = await store.commit_delivery(Delivery(REMOTE, (nobody, ghost), LOCAL_COPY, report=reports))
    batches.check(0)
    assert out.delivered == [] and out.queued == [] and out.queue_id is None
    assert set(out.failed) == {nobody, ghost}
    assert all(isinstance(e, NoSuchAccount) for e in out.failed.values())
    assert out.report == "" and reports.calls == []  # nobody got it: the caller refuses it


async def test_report_to_a_local_sender_lands_in_its_inbox(store: Store) -> None:
    alice, bob = await accounts(store, "alice0001", "bob000001")
    nobody = addr("nobody001")
    reports = Reports()
    batches = Batches(store)
    out = await store.commit_delivery(
        Delivery(alice, (bob, nobody), LOCAL_COPY, sender_is_local=True, report=reports)
    )
    batches.check(1)
    assert out.delivered == [bob] and list(out.failed) == [nobody]
    assert out.report == "delivered"
    assert await inbox(store, alice) == [reports.data]
    assert await inbox(store, bob) == [LOCAL_COPY]
    assert await store.queue_list() == []


async def test_report_that_the_sender_cannot_take_is_dropped(config: Config) -> None:
    config = with_limits(config, max_mailbox_size=10 * KIB)
    async with open_store(config, Logger(level="error"), expiry_interval=None) as s:
        alice, bob = await accounts(s, "alice0001", "bob000001")
        await deliver_to(s, [alice], b"a" * (9 * KIB))  # today's: cannot make room
        reports = Reports(b"r" * (2 * KIB))
        out = await s.commit_delivery(
            Delivery(
                alice, (bob, addr("nobody001")), LOCAL_COPY, sender_is_local=True, report=reports
            )
        )
        assert out.delivered == [bob] and out.report == "dropped"
        assert len(await inbox(s, alice)) == 1
        assert await inbox(s, bob) == [LOCAL_COPY]


async def test_no_report_for_a_null_sender_or_when_the_builder_declines(store: Store) -> None:
    [bob] = await accounts(store, "bob000001")
    nobody = addr("nobody001")
    reports = Reports()
    out = await store.commit_delivery(Delivery("", (bob, nobody), LOCAL_COPY, report=reports))
    assert out.delivered == [bob] and out.report == "" and reports.calls == []
    declining = Reports(None)
    out = await store.commit_delivery(Delivery(REMOTE, (bob, nobody), LOCAL_COPY, report=declining))
    assert out.report == "" and len(declining.calls) == 1
    assert await store.queue_list() == []
