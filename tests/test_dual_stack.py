"""`[listen] address = ["::"]` serves IPv4 and IPv6 clients on one socket, and an IPv4 client
that comes to it (as ::ffff:a.b.c.d) is the same client as on an IPv4 socket: its per-IP cap
and its login throttle are those of its IPv4 address, not of the IPv6 /64 that every mapped
address shares."""

from __future__ import annotations

import dataclasses
import imaplib
import smtplib
from pathlib import Path

import pytest
import trio

from relay.config import Config
from tests.helpers import RelayServer, make_config, record_throttle_delays, serving
from tests.smtp.session_helpers import PASSWORD, encrypted, in_thread, inbox


@pytest.fixture
def relay_config(tmp_path: Path) -> Config:
    config = make_config(tmp_path / "data")
    return dataclasses.replace(config, listen=dataclasses.replace(config.listen, address=["::"]))


def submit(server: RelayServer, host: str, sender: str, recipient: str) -> None:
    with smtplib.SMTP_SSL(
        host, server.port("submissions"), context=server.ssl_client_context(), timeout=10
    ) as client:
        client.login(sender, PASSWORD)
        client.sendmail(sender, [recipient], encrypted(sender))


def imap_login(server: RelayServer, host: str, user: str) -> str:
    with imaplib.IMAP4_SSL(
        host, server.port("imaps"), ssl_context=server.ssl_client_context(), timeout=10
    ) as client:
        typ, _ = client.login(user, PASSWORD)
        client.logout()
        return typ


async def test_the_ipv6_wildcard_serves_ipv4_and_ipv6_clients(relay_server: RelayServer) -> None:
    alice, bob = (f"{name}@{relay_server.domain}" for name in ("alice0001", "bob000001"))
    # A first login creates the account: one over IPv6, one over IPv4.
    assert await in_thread(lambda: imap_login(relay_server, "::1", alice)) == "OK"
    assert await in_thread(lambda: imap_login(relay_server, "127.0.0.1", bob)) == "OK"
    await in_thread(lambda: submit(relay_server, "127.0.0.1", alice, bob))
    await in_thread(lambda: submit(relay_server, "::1", bob, alice))
    assert len(await inbox(relay_server, bob)) == 1
    assert len(await inbox(relay_server, alice)) == 1


async def smtp_greets(host: str, port: int) -> bool:
    """Whether an SMTP greeting comes from host:port; False when nothing listens there."""
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError:
        return False
    with trio.fail_after(5):
        greeting = await stream.receive_some(100)
    await stream.aclose()
    return greeting.startswith(b"220 ")


@pytest.mark.parametrize(
    ("addresses", "answers_on"),
    [
        (["::1"], {"::1"}),  # an explicit IPv6 address: IPv6 only
        (["0.0.0.0", "::"], {"127.0.0.1", "::1"}),  # "::" beside an IPv4 wildcard: no collision
    ],
)
async def test_other_listen_addresses_answer_where_they_say(
    tmp_path: Path, addresses: list[str], answers_on: set[str]
) -> None:
    config = make_config(tmp_path / "data")
    listen = dataclasses.replace(config.listen, address=addresses)
    config = dataclasses.replace(config, listen=listen)
    async with serving(config):
        answered = {host for host in ("127.0.0.1", "::1") if await smtp_greets(host, listen.smtp)}
    assert answered == answers_on


async def test_the_per_ip_cap_counts_a_mapped_ipv4_client_by_its_ipv4_address(
    relay_server: RelayServer,
) -> None:
    app = relay_server.app
    app.config = dataclasses.replace(
        app.config, limits=dataclasses.replace(app.config.limits, max_connections_per_ip=1)
    )
    held = await trio.open_tcp_stream("127.0.0.1", relay_server.port("smtp"))
    with trio.fail_after(5):
        assert (await held.receive_some(100)).startswith(b"220 ")
    assert app.admission.per_ip.count("127.0.0.1") == 1
    second = await trio.open_tcp_stream("127.0.0.1", relay_server.port("imap"))
    with trio.fail_after(5):
        assert (await second.receive_some(100)).startswith(b"* BYE Too many connections")
    await second.aclose()
    await held.aclose()


async def test_failed_logins_of_one_ipv4_client_do_not_slow_another_on_the_dual_stack_socket(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays = record_throttle_delays(monkeypatch)
    port = relay_server.port("submissions")

    def fail_logins_from_another_address() -> None:
        with smtplib.SMTP_SSL(
            "127.0.0.1",
            port,
            context=relay_server.ssl_client_context(),
            timeout=10,
            source_address=("127.0.0.2", 0),
        ) as client:
            for _ in range(5):
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    client.login("nobody@example.org", "wrong-password")

    await in_thread(fail_logins_from_another_address)
    assert delays  # 127.0.0.2 itself is slowed down
    delays.clear()
    user = f"alice0001@{relay_server.domain}"
    assert await in_thread(lambda: imap_login(relay_server, "127.0.0.1", user)) == "OK"
    assert delays == []  # ...but 127.0.0.1 is another client, not the same IPv6 /64
