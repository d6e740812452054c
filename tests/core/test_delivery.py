"""deliver(): local fan-out, the outbound queue, and one full mailbox among several; through a
whole relay (SMTP, IMAP) on each store backend."""

from __future__ import annotations

import dataclasses
import smtplib

import pytest

from relay.config import Config
from relay.core.delivery import deliver
from tests.helpers import RelayServer
from tests.smtp.session_helpers import create_accounts, encrypted, in_thread, inbox, logged_in
from tests.store.helpers import config_for


@pytest.fixture
def relay_config(relay_config: Config, backend: str, request: pytest.FixtureRequest) -> Config:
    limits = dataclasses.replace(
        relay_config.limits, max_message_size=20_000, max_mailbox_size=20_000
    )
    return config_for(backend, dataclasses.replace(relay_config, limits=limits), request)


async def test_local_and_remote_recipients(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")
    data = b"DKIM-Signature: v=1\r\n" + encrypted(alice)
    result = await deliver(relay_server.app, alice, [bob, "Far@Remote.Example", bob], data)
    assert result.delivered == [bob] and result.queued == ["far@remote.example"]
    [entry] = await relay_server.app.store.queue_list()
    assert entry.id == result.queue_id
    assert await relay_server.app.store.queue_read(entry.id) == data  # queued as given
    [stored] = await inbox(relay_server, bob)
    assert stored == encrypted(alice)  # stored without transit headers


async def test_full_mailbox_does_not_block_other_recipients(relay_server: RelayServer) -> None:
    alice, bob, carol = await create_accounts(relay_server, "alice0001", "bob000001", "carol0001")
    message = encrypted(alice, payload_size=9_000)
    await deliver(relay_server.app, alice, [bob], message)
    result = await deliver(relay_server.app, alice, [bob, carol], message)
    assert result.delivered == [carol]
    assert {a: str(r) for a, r in result.failed.items()} == {
        bob: f"552 5.2.2 <{bob}>: Quota exceeded (mailbox for user is full)"
    }
    assert len(await inbox(relay_server, bob)) == 1

    def send_to_full_mailbox() -> tuple[int, bytes]:
        with logged_in(relay_server, "alice0001") as client:
            try:
                client.sendmail(alice, [bob], message)
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error
        return 0, b""

    assert await in_thread(send_to_full_mailbox) == (
        552,
        f"5.2.2 <{bob}>: Quota exceeded (mailbox for user is full)".encode(),
    )
