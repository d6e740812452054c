"""A message with local and remote recipients is stored in ONE durable operation: one sync, and
all of it or none of it. A failure after the local copies were planned must not leave them
behind, or the client, told to try again, would give every local recipient a second copy."""

from __future__ import annotations

import os

import pytest

from relay.store import ops_queue
from tests.helpers import RelayServer
from tests.smtp.session_helpers import create_accounts, encrypted, in_thread, inbox, logged_in

REMOTE = "friend@remote.example"


class SyncCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = os.fdatasync

        def counting(fd: int) -> None:
            self.count += 1
            real(fd)

        monkeypatch.setattr(os, "fdatasync", counting)


def send(server: RelayServer, sender: str, recipients: list[str]) -> tuple[int, bytes]:
    with logged_in(server, sender.split("@")[0]) as client:
        client.mail(sender)
        for rcpt in recipients:
            assert client.rcpt(rcpt)[0] == 250
        return client.data(encrypted(sender))


async def test_mixed_local_and_remote_delivery_costs_one_sync(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol = await create_accounts(relay_server, "alice0001", "bob000001", "carol0001")
    syncs = SyncCounter(monkeypatch)
    code, _ = await in_thread(lambda: send(relay_server, alice, [bob, carol, REMOTE]))
    assert code == 250
    assert syncs.count == 1
    assert len(await inbox(relay_server, bob)) == len(await inbox(relay_server, carol)) == 1
    [entry] = await relay_server.app.store.queue_list()
    assert entry.recipients == [REMOTE]


async def test_a_failing_queue_write_leaves_no_local_copy_and_a_retry_no_duplicate(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")

    def broken(*args: object, **kwargs: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ops_queue, "enqueue", broken)
    code, text = await in_thread(lambda: send(relay_server, alice, [bob, REMOTE]))
    assert (code, text) == (451, b"4.3.0 Error: queue file write error")
    assert await inbox(relay_server, bob) == []
    assert await relay_server.app.store.queue_list() == []

    monkeypatch.undo()
    code, _ = await in_thread(lambda: send(relay_server, alice, [bob, REMOTE]))
    assert code == 250
    assert len(await inbox(relay_server, bob)) == 1
    assert [e.recipients for e in await relay_server.app.store.queue_list()] == [[REMOTE]]
