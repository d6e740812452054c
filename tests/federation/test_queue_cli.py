"""`relay queue list|retry|delete --config F` as an operator runs it: on a stopped relay's
store, and on a running relay (which owns its store: the command goes over its admin socket)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import trio

from relay.log import Logger
from relay.store import open_store
from tests.federation.conftest import SENDER_IP, closed_port, wait_until
from tests.federation.mail import encrypted
from tests.federation.pair import Endpoint, Relay, relay_config
from tests.helpers import SERVICES, free_ports, make_config

SENDER = "alice1234@[127.0.0.2]"
BOB = "bob123456@[127.0.0.3]"


async def test_list_retry_delete_on_a_stopped_relay(tmp_path: Path) -> None:
    config = make_config(tmp_path / "relay")
    async with open_store(config, Logger(level="warning"), expiry_interval=None) as store:
        first, second = [
            await store.enqueue(SENDER, [r], b"Subject: x\r\n\r\nhi\r\n")
            for r in ("bob123456@[127.0.0.3]", "carol1234@[127.0.0.4]")
        ]
        await store.queue_update(first, attempts=3, last_error="421 Failed to connect")
        [created] = [e.created for e in await store.queue_list() if e.id == first]
    relay = Endpoint(config)

    listed = await relay.command("queue", "list")
    assert listed.returncode == 0, listed.stderr
    assert first in listed.stdout and second in listed.stdout
    assert "last error: 421 Failed to connect" in listed.stdout
    assert "2 message(s) in the queue" in listed.stdout
    listed = await relay.command("queue", "list", "--json")
    assert {e["id"] for e in json.loads(listed.stdout)} == {first, second}

    retried = await relay.command("queue", "retry", first)
    assert (retried.returncode, retried.stdout) == (0, "1 message(s) will be tried now\n")
    listed = await relay.command("queue", "list", "--json")
    entries = {e["id"]: e for e in json.loads(listed.stdout)}
    assert entries[first]["attempts"] == 3
    assert datetime.fromisoformat(entries[first]["next_attempt"]).timestamp() <= (
        created.timestamp() + 60
    )

    deleted = await relay.command("queue", "delete", second)
    assert (deleted.returncode, deleted.stdout) == (0, "1 message(s) deleted without a bounce\n")
    listed = await relay.command("queue", "list", "--json")
    assert [e["id"] for e in json.loads(listed.stdout)] == [first]
    unknown = await relay.command("queue", "delete", "nonexistent")
    assert unknown.returncode == 1 and "no such queue entry: nonexistent" in unknown.stderr
    assert (await relay.command("queue", "delete")).returncode == 1


async def test_a_running_relay_is_steered_over_its_admin_socket(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    ports = dict(zip(SERVICES, free_ports(len(SERVICES), SENDER_IP), strict=True))
    config = relay_config(
        tmp_path / "relay",
        SENDER_IP,
        ports,
        peer_https_port=closed_port(),
        peer_smtp_port=closed_port(),
        retry_initial=600,  # the worker would not try again during this test by itself
        retry_max=3600,
    )
    relay = Relay(config)
    await relay.start(nursery)
    await relay.submit(SENDER, [BOB], encrypted(SENDER, [BOB]))
    await wait_until(relay.tried)

    listed = await relay.command("queue", "list", "--json")
    [entry] = json.loads(listed.stdout)
    assert entry["recipients"] == [BOB] and entry["attempts"] == 1
    assert entry["last_error"].startswith("421 Failed to connect to any mail server")

    retried = await relay.command("queue", "retry")
    assert (retried.returncode, retried.stdout) == (0, "1 message(s) will be tried now\n")

    async def tried_again() -> bool:
        return (await relay.queue())[0].attempts == 2

    await wait_until(tried_again)

    deleted = await relay.command("queue", "delete", entry["id"])
    assert (deleted.returncode, deleted.stdout) == (0, "1 message(s) deleted without a bounce\n")
    assert await relay.queue_empty()
    assert await relay.fetch_inbox(SENDER) == []  # deleted, not bounced
