"""Port 25 (MX): other relays deliver to our users; the same PGP gate, no AUTH, no relaying.

Senders here are domain literals (user@[127.0.0.9]), which have no DNS for DKIM keys and are
accepted without a signature, as the official relay does; a DNS-name sender domain needs one.
"""

from __future__ import annotations

import smtplib

from tests.helpers import RelayServer
from tests.policy.corpus import mailer_daemon
from tests.smtp.session_helpers import (
    addr,
    create_accounts,
    encrypted,
    in_thread,
    inbox,
    mx,
    plain,
)

REMOTE = "sender01@[127.0.0.9]"


async def test_encrypted_mail_from_another_relay_is_stored(relay_server: RelayServer) -> None:
    [bob] = await create_accounts(relay_server, "bob000001")
    message = b"DKIM-Signature: v=1; d=example.org; b=x\r\n" + encrypted(REMOTE)

    def run() -> tuple[int, bytes]:
        with mx(relay_server) as client:
            client.mail(REMOTE)
            client.rcpt(bob)
            return client.data(message)

    code, text = await in_thread(run)
    assert code == 250 and text == b"2.0.0 Ok: queued"
    [stored] = await inbox(relay_server, bob)
    assert b"DKIM-Signature" not in stored
    assert b"Subject: [...]" in stored


async def test_mx_offers_starttls_but_no_auth(relay_server: RelayServer) -> None:
    def run() -> tuple[bool, bool, tuple[int, bytes]]:
        client = smtplib.SMTP(relay_server.host, relay_server.port("smtp"), timeout=10)
        client.ehlo("remote.example")
        starttls = client.has_extn("starttls")
        client.starttls(context=relay_server.ssl_client_context())
        client.ehlo("remote.example")
        auth = client.has_extn("auth")
        refused = client.docmd("AUTH", "PLAIN AGFAYgBj")
        client.quit()
        return starttls, auth, refused

    starttls, auth, refused = await in_thread(run)
    assert starttls and not auth
    assert refused == (503, b"5.5.1 Error: authentication not enabled")


async def test_mail_in_clear_text_is_refused_until_starttls(relay_server: RelayServer) -> None:
    """As the official relay's Postfix (smtpd_tls_security_level = encrypt): other relays
    deliver over TLS or not at all, so not even the envelope crosses the network in the clear."""
    [bob] = await create_accounts(relay_server, "bob000001")

    def run() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        client = smtplib.SMTP(relay_server.host, relay_server.port("smtp"), timeout=10)
        client.ehlo("remote.example")
        refused = client.mail(REMOTE)
        client.starttls(context=relay_server.ssl_client_context())
        client.ehlo("remote.example")
        accepted = client.mail(REMOTE)
        client.quit()
        return refused, accepted

    refused, accepted = await in_thread(run)
    assert refused == (530, b"5.7.0 Must issue a STARTTLS command first")
    assert accepted == (250, b"2.1.0 Ok")
    assert await inbox(relay_server, bob) == []


async def test_vrfy_never_tells(relay_server: RelayServer) -> None:
    [bob] = await create_accounts(relay_server, "bob000001")
    queries = [bob, addr(relay_server, "nobody001"), "wrongaddress", "echo"]

    def run() -> list[tuple[int, bytes]]:
        with mx(relay_server) as client:
            return [client.verify(q) for q in queries]

    replies = await in_thread(run)
    assert replies == [(252, f"2.0.0 {q}".encode()) for q in queries]


async def test_unknown_user_refused_and_no_account_created(relay_server: RelayServer) -> None:
    ghost = addr(relay_server, "ghost0001")

    def run() -> tuple[int, bytes]:
        with mx(relay_server) as client:
            client.mail(REMOTE)
            return client.rcpt(ghost)

    assert await in_thread(run) == (
        550,
        f"5.1.1 <{ghost}>: Recipient address rejected: User unknown".encode(),
    )
    assert not await relay_server.app.store.account_exists(ghost)


async def test_no_relaying_to_other_domains(relay_server: RelayServer) -> None:
    def run() -> tuple[int, bytes]:
        with mx(relay_server) as client:
            client.mail(REMOTE)
            return client.rcpt("victim@elsewhere.example")

    assert await in_thread(run) == (554, b"5.7.1 <victim@elsewhere.example>: Relay access denied")
    assert await relay_server.app.store.queue_list() == []


async def test_unencrypted_incoming_is_refused(relay_server: RelayServer) -> None:
    [bob] = await create_accounts(relay_server, "bob000001")

    def run() -> tuple[int, bytes]:
        with mx(relay_server) as client:
            try:
                client.sendmail(REMOTE, [bob], plain(REMOTE, bob))
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error
        return 0, b""

    assert await in_thread(run) == (523, b"5.7.1 Encryption Needed: Invalid Unencrypted Mail")
    assert await inbox(relay_server, bob) == []


async def test_bounce_from_mailer_daemon_is_accepted(relay_server: RelayServer) -> None:
    [bob] = await create_accounts(relay_server, "bob000001")
    report = (
        mailer_daemon()
        .replace(b"bob000001@[127.0.0.1]", bob.encode())
        .replace(b"MAILER-DAEMON@remote.example", b"MAILER-DAEMON@[127.0.0.9]")
    )

    def run() -> dict:
        with mx(relay_server) as client:
            return client.sendmail("", [bob], report)

    assert await in_thread(run) == {}
    [stored] = await inbox(relay_server, bob)
    assert b"multipart/report" in stored


async def test_forged_envelope_sender_is_accepted(relay_server: RelayServer) -> None:
    """A mismatching envelope sender (forwarding) is not refused on port 25."""
    [bob] = await create_accounts(relay_server, "bob000001")

    def run() -> dict:
        with mx(relay_server) as client:
            return client.sendmail("bounces+x@lists.example", [bob], encrypted(REMOTE))

    assert await in_thread(run) == {}
    assert len(await inbox(relay_server, bob)) == 1


async def test_unsigned_mail_from_a_dns_name_domain_is_refused(relay_server: RelayServer) -> None:
    """Anyone could claim a DNS-name domain; only its DKIM signature shows the mail is its."""
    [bob] = await create_accounts(relay_server, "bob000001")
    sender = "sender01@remote.example"

    def run() -> tuple[int, bytes]:
        with mx(relay_server) as client:
            try:
                client.sendmail(sender, [bob], encrypted(sender))
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error
        return 0, b""

    assert await in_thread(run) == (554, b"5.7.1 No DKIM signature found")
    assert await inbox(relay_server, bob) == []
