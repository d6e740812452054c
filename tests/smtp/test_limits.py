"""Limits on submission and connection hygiene, over real TLS with smtplib."""

from __future__ import annotations

import dataclasses
import smtplib

import pytest

from relay.config import Config
from tests.helpers import RelayServer
from tests.smtp.session_helpers import create_accounts, encrypted, in_thread, inbox, logged_in


@pytest.fixture
def relay_config(relay_config: Config) -> Config:
    limits = dataclasses.replace(
        relay_config.limits,
        max_user_send_per_minute=1,
        max_user_send_burst_size=3,
        max_message_size=20_000,
    )
    return dataclasses.replace(relay_config, limits=limits)


async def test_rate_limit_at_rcpt_after_burst(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")

    def run() -> list[object]:
        outcomes: list[object] = []
        with logged_in(relay_server, "alice0001") as client:
            for _ in range(5):
                try:
                    outcomes.append(client.sendmail(alice, [bob], encrypted(alice)))
                except smtplib.SMTPRecipientsRefused as e:
                    outcomes.append(e.recipients[bob])
                    client.rset()
        return outcomes

    outcomes = await in_thread(run)
    assert outcomes[:3] == [{}, {}, {}]
    for code, text in outcomes[3:]:
        assert code == 450
        assert text.startswith(f"4.7.1: Too much mail from <{alice}>, rate limited for".encode())
    assert len(await inbox(relay_server, bob)) == 3


async def test_size_limit(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")
    big = encrypted(alice, payload_size=30_000)

    def run() -> list[tuple[int, bytes]]:
        outcomes = []
        with logged_in(relay_server, "alice0001") as client:
            try:  # smtplib announces SIZE=, so MAIL is refused
                client.sendmail(alice, [bob], big)
            except smtplib.SMTPSenderRefused as e:
                outcomes.append((e.smtp_code, e.smtp_error))
            client.rset()
            client.mail(alice)  # without SIZE= the limit applies at the end of DATA
            client.rcpt(bob)
            outcomes.append(client.data(big))
        return outcomes

    assert await in_thread(run) == [
        (552, b"5.3.4 Message size exceeds fixed limit"),
        (552, b"Message exceeds maximum size"),
    ]
    assert await inbox(relay_server, bob) == []
