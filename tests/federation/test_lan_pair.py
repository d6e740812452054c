"""Two LAN-mode relays on 127.0.0.2 and 127.0.0.3 exchanging mail as their users see it:
SMTPS submission on one, IMAPS on the other, /mxdeliv or SMTP between them. Nothing but the
relays themselves moves the mail: submission queues it, the outbound worker sends it."""

from __future__ import annotations

import http.client
import smtplib
from email import message_from_bytes
from pathlib import Path

import pytest
import trio

from tests.federation.conftest import wait_until
from tests.federation.mail import encrypted, plain
from tests.federation.pair import ChildRelay, Relay, relay_config, shared_ports
from tests.helpers import client_context

A_IP, B_IP = "127.0.0.2", "127.0.0.3"


@pytest.fixture
def ports() -> dict[str, int]:
    return shared_ports([A_IP, B_IP])


@pytest.fixture
async def pair(tmp_path: Path, ports, nursery: trio.Nursery) -> tuple[Relay, Relay]:
    a = Relay(relay_config(tmp_path / "a", A_IP, ports))
    b = Relay(relay_config(tmp_path / "b", B_IP, ports))
    await a.start(nursery)
    await b.start(nursery)
    return a, b


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


async def exchange(a: Relay, b: Relay, text: str) -> tuple[bytes, bytes]:
    """alice on A writes to bob on B; returns what was sent and what bob's IMAP shows."""
    alice, bob = a.address("alice1234"), b.address("bob123456")
    await a.account(alice)
    await b.account(bob)
    message = encrypted(alice, [bob], text)
    await a.submit(alice, [bob], message)
    [got] = await b.wait_for_mail(bob)
    return message, got


async def test_mail_goes_both_ways_over_mxdeliv(pair: tuple[Relay, Relay]) -> None:
    a, b = pair
    sent, got = await exchange(a, b, "ping")
    assert body_of(got) == body_of(sent)
    assert message_from_bytes(got)["Message-ID"] == message_from_bytes(sent)["Message-ID"]
    sent, got = await exchange(b, a, "pong")
    assert body_of(got) == body_of(sent)
    for relay in (a, b):
        [line] = relay.log_lines("federation-delivered")
        assert "via=https" in line


@pytest.mark.parametrize(
    ("closed", "carrier"),
    [("https", "smtp"), ("smtp", "https")],
    ids=["https-closed-falls-back-to-smtp", "smtp-closed-https-carries-it"],
)
async def test_one_closed_port_the_other_carries_it(
    tmp_path: Path, ports, nursery, closed: str, carrier: str
) -> None:
    a = Relay(relay_config(tmp_path / "a", A_IP, ports))
    b = Relay(relay_config(tmp_path / "b", B_IP, {**ports, closed: 0}))
    await a.start(nursery)
    await b.start(nursery)
    sent, got = await exchange(a, b, f"over {carrier}")
    assert body_of(got) == body_of(sent)
    [line] = a.log_lines("federation-delivered")
    assert f"via={carrier}" in line


async def test_both_closed_waits_in_the_queue_until_the_peer_is_back(
    tmp_path: Path, ports, nursery: trio.Nursery
) -> None:
    """B is `relay serve` in its own process: stopped as systemd stops it, then started again."""
    a = Relay(relay_config(tmp_path / "a", A_IP, ports))
    b = ChildRelay(relay_config(tmp_path / "b", B_IP, ports))
    await a.start(nursery)
    await b.start()
    try:
        alice, bob = a.address("alice1234"), b.address("bob123456")
        await a.account(alice)
        assert await b.fetch_inbox(bob) == []  # bob's first login creates his account
        await b.stop()
        message = encrypted(alice, [bob], "are you there?")
        await a.submit(alice, [bob], message)
        await wait_until(a.tried)
        [entry] = await a.queue()
        assert entry.last_error.startswith("421 Failed to connect to any mail server")
        await b.start()
        [got] = await b.wait_for_mail(bob, timeout=30)
        assert body_of(got) == body_of(message)
        await wait_until(a.queue_empty)
    finally:
        await b.stop()


async def test_peers_refuse_unencrypted_mail_on_both_paths(pair: tuple[Relay, Relay]) -> None:
    a, b = pair
    alice, bob = a.address("alice1234"), b.address("bob123456")
    await b.account(bob)
    message = plain(alice, [bob])

    def post() -> tuple[int, bytes]:
        ctx = client_context(b.config)
        conn = http.client.HTTPSConnection(B_IP, b.config.listen.https, context=ctx, timeout=10)
        conn.request("POST", "/mxdeliv", message, {"X-Mail-From": alice, "X-Mail-To": bob})
        response = conn.getresponse()
        return response.status, response.read()

    assert await trio.to_thread.run_sync(post) == (
        400,
        b"523 5.7.1 Encryption Needed: Invalid Unencrypted Mail",
    )

    def smtp() -> None:
        with smtplib.SMTP(B_IP, b.config.listen.smtp, timeout=10) as s:
            s.starttls(context=client_context(b.config))
            s.sendmail(alice, [bob], message)

    with pytest.raises(smtplib.SMTPDataError) as e:
        await trio.to_thread.run_sync(smtp)
    assert e.value.smtp_code == 523
    assert await b.fetch_inbox(bob) == []
