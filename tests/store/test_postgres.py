"""What only the PostgreSQL store has: several nodes on one database (wake-ups, leases, the
expiry leader), its schema versions, and a pool that survives cancelled calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from relay.cli import main
from relay.log import Logger
from relay.store import Delivery, MailboxChange, MailStore, QueueEntry, open_store
from tests.helpers import deliver_to, make_account
from tests.pg import PgServer, fresh_database
from tests.store.conftest import PASSWORD
from tests.store.helpers import Clock, addr, on_postgresql, store_config


def split(raw: str | None) -> list[str]:
    return raw.split() if raw else []


@pytest.fixture
async def nodes(tmp_path: Path, pg_dsn: str, clock: Clock) -> AsyncIterator[list[MailStore]]:
    """Two store instances on one database: two relay nodes."""
    async with AsyncExitStack() as stack:
        stores = []
        for n in range(2):
            config = on_postgresql(store_config(tmp_path / f"node{n}"), pg_dsn)
            opened = open_store(
                config, Logger(level="error"), **clock.store_clocks(), expiry_interval=None
            )
            stores.append(await stack.enter_async_context(opened))
        yield stores


async def test_a_delivery_on_one_node_wakes_a_watcher_on_the_other(
    nodes: list[MailStore],
) -> None:
    one, two = nodes
    alice = addr("alice0001")
    assert await make_account(one, alice, PASSWORD)
    async with two.watch(alice) as events, one.watch(alice) as local:
        await deliver_to(one, [alice], b"Subject: hi\r\n\r\nacross\r\n")
        assert local.receive_nowait().uids == (1,)  # the writing node: at once
        with trio.fail_after(5):
            assert await events.receive() == MailboxChange("INBOX", "exists", (1,))
        assert await two.read(alice, "INBOX", 1) == b"Subject: hi\r\n\r\nacross\r\n"
        await two.set_flags(alice, "INBOX", [1], ["\\Seen"], "add")
        with trio.fail_after(5):
            assert await local.receive() == MailboxChange("INBOX", "flags", (1,))
        assert events.receive_nowait() == MailboxChange("INBOX", "flags", (1,))
        await deliver_to(one, [alice], b"second")
        with trio.fail_after(5):  # notifications keep their order: no second "flags" came
            assert await events.receive() == MailboxChange("INBOX", "exists", (2,))


async def test_queue_claim_gives_an_entry_to_one_node(nodes: list[MailStore], clock: Clock) -> None:
    one, two = nodes
    qid = await one.enqueue("a@x", ["r@example.org"], b"remote")
    claims = await two.queue_claim(qid, 60), await one.queue_claim(qid, 60)
    assert sorted(claims) == [False, True]
    winner, loser = (two, one) if claims[0] else (one, two)
    assert await winner.queue_claim(qid, 60)  # renewing one's own lease
    assert not await loser.queue_claim(qid, 60)
    await winner.queue_update(qid, attempts=1)  # the attempt's end gives the lease up
    assert await loser.queue_claim(qid, 60)
    clock.advance_days(1)  # a lease of a node that died runs out
    assert await winner.queue_claim(qid, 60)


async def test_pending_push_items_go_to_one_node(nodes: list[MailStore], clock: Clock) -> None:
    one, two = nodes
    alice = addr("alice0001")
    assert await make_account(one, alice, PASSWORD)
    await one.set_metadata(alice, "/private/devicetoken", "tok1 tok2")
    delivery = Delivery(
        "", (alice,), b"Subject: x\r\n\r\n", push_tokens=("/private/devicetoken", split)
    )
    out = await one.commit_delivery(delivery)
    assert sorted(item.token for item in out.push) == ["tok1", "tok2"]
    # the delivering node sends them; another node starting up does not take them over
    assert await two.push_pending("/private/devicetoken", split) == []
    clock.advance_days(1)  # unless that node died: its lease ran out
    items = await two.push_pending("/private/devicetoken", split)
    assert sorted(item.id for item in items) == sorted(item.id for item in out.push)
    assert await one.push_pending("/private/devicetoken", split) == []
    await two.push_done([item.id for item in items])
    clock.advance_days(1)
    assert await one.push_pending("/private/devicetoken", split) == []


async def test_expiry_runs_only_on_the_node_holding_the_lock(
    nodes: list[MailStore], pg_dsn: str, clock: Clock
) -> None:
    import psycopg

    from relay.store.postgres.leader import EXPIRY_LOCK

    one, two = nodes
    alice = addr("alice0001")
    assert await make_account(one, alice, PASSWORD)
    await deliver_to(one, [alice], b"old mail")
    clock.advance_days(21)
    await one.touch_login(alice)
    with psycopg.connect(pg_dsn, autocommit=True) as leader:
        leader.execute("SELECT pg_advisory_lock(%s)", (EXPIRY_LOCK,))
        assert (await two.expire()).messages == 0  # another node is the leader
        assert len((await two.snapshot(alice, "INBOX")).messages) == 1
        leader.execute("SELECT pg_advisory_unlock(%s)", (EXPIRY_LOCK,))
    assert (await two.expire()).messages == 1  # two took the lead
    await deliver_to(one, [alice], b"more old mail")
    clock.advance_days(21)
    await one.touch_login(alice)
    assert (await one.expire()).messages == 0  # and keeps it
    assert (await two.expire()).messages == 1


async def test_a_lost_listen_connection_wakes_every_watcher(
    nodes: list[MailStore], pg_dsn: str
) -> None:
    import psycopg

    one, _ = nodes
    alice = addr("alice0001")
    assert await make_account(one, alice, PASSWORD)
    async with one.watch(alice) as events:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
            )
        with trio.fail_after(10):
            assert (await events.receive()).kind == "resync"  # changes may have been missed
        await deliver_to(one, [alice], b"after")
        assert events.receive_nowait() == MailboxChange("INBOX", "exists", (1,))


def test_db_upgrade_creates_the_schema_once(
    pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from relay.store.postgres.schema import VERSION

    dsn = fresh_database(pg_server, migrated=False)
    assert main(["db", "upgrade", "--dsn", dsn]) == 0
    assert f"upgraded from version 0 to {VERSION}" in capsys.readouterr().out
    assert main(["db", "upgrade", "--dsn", dsn]) == 0
    assert "nothing to do" in capsys.readouterr().out


async def test_a_database_without_the_schema_is_refused(
    pg_server: PgServer, tmp_path: Path
) -> None:
    from relay.store.postgres.schema import SchemaError

    config = on_postgresql(store_config(tmp_path), fresh_database(pg_server, migrated=False))
    with pytest.raises(SchemaError, match="relay db upgrade"):
        async with open_store(config, Logger(level="error"), expiry_interval=None):
            pass


async def test_a_cancelled_call_leaves_no_transaction_in_the_pool(pg_dsn: str) -> None:
    from psycopg import pq

    from relay.store.postgres.pool import Pool

    pool = Pool(pg_dsn, 1, statement_timeout=5)  # one connection: the next call reuses it
    finished = []

    def slow(conn: Any) -> None:
        conn.execute("CREATE TEMP TABLE t(x int)")
        conn.execute("SELECT pg_sleep(0.3)")
        finished.append(conn)

    with trio.move_on_after(0.05) as scope:
        await pool.run(slow)
    assert scope.cancel_called
    # the task waited for its thread: the transaction ended before the connection went back
    [conn] = finished
    assert conn.info.transaction_status == pq.TransactionStatus.IDLE
    assert await pool.run(lambda c: c is conn and c.execute("SELECT count(*) FROM t").fetchone())
    await pool.aclose()


async def test_the_outbound_worker_leaves_an_entry_another_node_sends(
    nodes: list[MailStore],
) -> None:
    from relay.outbound.worker import CLAIM_SECONDS, Outbound

    one, two = nodes
    qid = await one.enqueue("a@x", ["r@example.org"], b"remote")
    assert await one.queue_claim(qid, CLAIM_SECONDS)  # node one's worker is sending it
    app = SimpleNamespace(store=two, config=two.config, log=Logger(level="error"))
    worker = Outbound(app)
    attempted: list[str] = []

    async def attempt(entry: QueueEntry) -> None:
        attempted.append(entry.id)

    worker.attempt = attempt  # type: ignore[method-assign]
    [entry] = await two.queue_list()
    await worker._attempt(entry)
    assert attempted == []  # node two did not send it too
    await one.queue_update(qid, attempts=1)  # node one's attempt ended: the next may be two's
    await worker._attempt(entry)
    assert attempted == [qid]


async def test_concurrent_writes_on_two_nodes_keep_uids_and_quota_right(
    nodes: list[MailStore],
) -> None:
    one, two = nodes
    alice, bob = addr("alice0001"), addr("bob000001")
    for a in (alice, bob):
        assert await make_account(one, a, PASSWORD)

    async def deliver(store: MailStore, n: int) -> None:
        recipients = [alice, bob] if n % 2 else [bob, alice]  # both lock orders
        await deliver_to(store, recipients, b"message %d" % n)

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(deliver, nodes[n % 2], n)
    for a in (alice, bob):
        snap = await two.snapshot(a, "INBOX")
        assert [m.uid for m in snap.messages] == list(range(1, 21))
        assert snap.uidnext == 21
        bodies = {await one.read(a, "INBOX", m.uid) for m in snap.messages}
        assert bodies == {b"message %d" % n for n in range(20)}
        assert await one.quota_usage(a) == sum(len(body) for body in bodies)


async def test_db_migrate_copies_an_embedded_store(
    tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    embedded = store_config(tmp_path / "data")
    alice, bob = addr("alice0001"), addr("bob000001")
    later = datetime(2030, 1, 1, tzinfo=UTC)
    async with open_store(embedded, Logger(level="error"), expiry_interval=None) as old:
        for a in (alice, bob):
            assert await make_account(old, a, PASSWORD)
        await deliver_to(old, [alice, bob], b"Subject: one\r\n\r\nshared body\r\n")
        await old.create_mailbox(alice, "DeltaChat")
        await old.copy(alice, "INBOX", [1], "DeltaChat")
        await old.append(alice, "DeltaChat", b"appended", flags=["\\Seen"])
        await old.set_metadata(alice, "/private/devicetoken", "tok")
        await old.block(addr("spammer01"))
        qid = await old.enqueue(alice, ["r@example.org"], b"remote")
        await old.queue_update(qid, attempts=2, next_attempt=later, last_error="451 later")
        before = {
            a: {m.name: await old.snapshot(a, m.name) for m in await old.list_mailboxes(a)}
            for a in (alice, bob)
        }
        auth = {a: await old.account_auth(a) for a in (alice, bob)}
        queue = await old.queue_list()
    dsn_args = ["--dsn", pg_dsn]
    assert main(["db", "migrate", "--from-embedded", str(embedded.data_dir), *dsn_args]) == 0
    assert "2 accounts" in capsys.readouterr().out
    async with open_store(
        on_postgresql(embedded, pg_dsn), Logger(level="error"), expiry_interval=None
    ) as new:
        for a in (alice, bob):
            assert await new.account_auth(a) == auth[a]
            for name, snap in before[a].items():
                assert await new.snapshot(a, name) == snap
        assert await new.read(alice, "DeltaChat", 1) == b"Subject: one\r\n\r\nshared body\r\n"
        assert await new.read(alice, "DeltaChat", 2) == b"appended"
        assert await new.get_metadata(alice, "/private/devicetoken") == "tok"
        assert await new.is_blocked(addr("spammer01"))
        assert await new.queue_list() == queue
        assert await new.queue_read(qid) == b"remote"
        await new.create_mailbox(bob, "Later")  # a new uidvalidity, above the copied ones
        uidvalidities = [s.uidvalidity for s in [*before[alice].values(), *before[bob].values()]]
        assert (await new.snapshot(bob, "Later")).uidvalidity > max(uidvalidities)
    with psycopg.connect(pg_dsn) as conn:  # the delivery's body once, the append's, the queue's
        assert conn.execute("SELECT count(*) FROM bodies").fetchone() == (3,)
    assert main(["db", "migrate", "--from-embedded", str(embedded.data_dir), *dsn_args]) == 1
    assert "migrate into an empty one" in capsys.readouterr().err


async def test_a_queue_kick_on_one_node_wakes_the_other_nodes_worker(
    nodes: list[MailStore],
) -> None:
    one, two = nodes
    kicks = [0, 0]
    one.on_queue_kick = lambda: kicks.__setitem__(0, kicks[0] + 1)
    two.on_queue_kick = lambda: kicks.__setitem__(1, kicks[1] + 1)
    await one.queue_kick()  # an admin's retry on node one
    await wait_for(lambda: kicks[1] == 1)
    await two.queue_kick()  # notifications arrive in commit order: one has seen its own by now
    await wait_for(lambda: kicks[0] == 1)
    assert kicks == [1, 1]  # nobody kicked itself through the database


async def wait_for(condition) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(10):  # a backstop: a lost kick fails instead of hanging
        while not condition():
            await trio.sleep(0.01)
