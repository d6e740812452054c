"""Change events for IDLE, and the durable outbound queue."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from relay.log import Logger
from relay.store import MailboxChange, NoSuchQueueEntry, Store, open_store
from tests.helpers import deliver_to, make_account
from tests.store.conftest import PASSWORD
from tests.store.helpers import addr, store_config


async def test_watch_sees_each_change_once_it_is_durable(store: Store, alice: str) -> None:
    bob = addr("bob000001")
    assert await make_account(store, bob, PASSWORD)
    async with store.watch(alice) as events, store.watch(bob) as bob_events:
        await deliver_to(store, [alice], b"one")
        # by the time deliver returns the event is there, and the message is readable
        assert events.receive_nowait() == MailboxChange("INBOX", "exists", (1,))
        assert await store.read(alice, "INBOX", 1) == b"one"
        await store.set_flags(alice, "INBOX", [1], ["\\Seen"], "add")
        assert events.receive_nowait() == MailboxChange("INBOX", "flags", (1,))
        await store.set_flags(alice, "INBOX", [1], ["\\Seen"], "add")  # no change, no event
        await store.create_mailbox(alice, "DeltaChat")
        await store.move(alice, "INBOX", [1], "DeltaChat")
        assert events.receive_nowait() == MailboxChange("DeltaChat", "exists", (1,))
        assert events.receive_nowait() == MailboxChange("INBOX", "expunge", (1,))
        with pytest.raises(trio.WouldBlock):
            events.receive_nowait()
        with pytest.raises(trio.WouldBlock):
            bob_events.receive_nowait()  # other accounts hear nothing


async def test_watch_wakes_a_waiting_task(store: Store, alice: str) -> None:
    got: list[MailboxChange] = []

    async def idle(task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with store.watch(alice) as events:
            task_status.started()
            got.append(await events.receive())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(idle)
            await deliver_to(store, [alice], b"wake up")
    assert got == [MailboxChange("INBOX", "exists", (1,))]


async def test_a_slow_watcher_gets_resync_and_never_blocks_writers(
    store: Store, alice: str
) -> None:
    store._notifier.buffer = 4
    async with store.watch(alice) as events:
        with trio.fail_after(10):
            for n in range(10):
                await deliver_to(store, [alice], b"msg %d" % n)
        seen = []
        async for change in events:  # ends: the channel is closed after the resync
            seen.append(change)
    assert seen[-1].kind == "resync"
    assert [c.uids[0] for c in seen[:-1]] == [1, 2, 3]


async def test_queue_is_durable_and_editable(tmp_path: Path) -> None:
    config = store_config(tmp_path / "data")
    data = b"From: a@x\r\n\r\nremote mail\r\n"
    later = datetime(2030, 1, 1, tzinfo=UTC)
    async with open_store(config, Logger(level="error"), expiry_interval=None) as store:
        qid = await store.enqueue("a@x", ["r1@example.org", "r2@example.net"], data)
        other = await store.enqueue("a@x", ["r3@example.org"], b"second")
    async with open_store(config, Logger(level="error"), expiry_interval=None) as store:
        entries = {e.id: e for e in await store.queue_list()}
        assert set(entries) == {qid, other}
        entry = entries[qid]
        assert entry.recipients == ["r1@example.org", "r2@example.net"]
        assert (entry.sender, entry.size, entry.attempts) == ("a@x", len(data), 0)
        assert await store.queue_read(qid) == data
        await store.queue_update(qid, attempts=1, next_attempt=later, last_error="451 try later")
        await store.queue_remove(qid, ["r1@example.org"])
        await store.queue_remove(other)
    async with open_store(config, Logger(level="error"), expiry_interval=None) as store:
        [entry] = await store.queue_list()
        assert entry.recipients == ["r2@example.net"]
        assert (entry.attempts, entry.next_attempt, entry.last_error) == (1, later, "451 try later")
        await store.queue_remove(qid, ["r2@example.net"])  # last recipient: the entry goes
        assert await store.queue_list() == []
        with pytest.raises(NoSuchQueueEntry):
            await store.queue_read(qid)


async def test_metadata_is_raw_per_account_storage(store: Store, alice: str) -> None:
    assert await store.get_metadata(alice, "/private/devicetoken") is None
    await store.set_metadata(alice, "/private/devicetoken", "tok1 tok2")
    assert await store.get_metadata(alice, "/private/devicetoken") == "tok1 tok2"
    await store.set_metadata(alice, "/private/devicetoken", None)
    assert await store.get_metadata(alice, "/private/devicetoken") is None
