"""Submission (465 implicit TLS, 587 STARTTLS) over real TLS with smtplib: every policy rule."""

from __future__ import annotations

import base64
import smtplib

from tests.helpers import RelayServer
from tests.policy.corpus import autocrypt_setup, securejoin
from tests.smtp.session_helpers import (
    PASSWORD,
    addr,
    create_accounts,
    encrypted,
    in_thread,
    inbox,
    logged_in,
    plain,
    smtps,
    submission,
)


async def test_first_login_creates_account_and_mail_is_stored(relay_server: RelayServer) -> None:
    alice, bob = addr(relay_server, "alice0001"), addr(relay_server, "bob000001")
    await create_accounts(relay_server, "bob000001")
    assert not await relay_server.app.store.account_exists(alice)

    def send() -> tuple[int, bytes]:
        with smtps(relay_server) as client:
            code, text = client.login(alice, PASSWORD)
            assert (code, text) == (235, b"2.7.0 Authentication successful")
            client.mail(alice)
            client.rcpt(bob)
            return client.data(encrypted(alice, epilogue="trailing\n.\n..\n"))

    code, text = await in_thread(send)
    assert code == 250 and text.startswith(b"2.0.0 Ok")
    assert await relay_server.app.store.account_exists(alice)
    [stored] = await inbox(relay_server, bob)
    # dot-stuffing undone: the lone "." and ".." lines arrive as sent
    assert stored.endswith(b"--XYZ--\r\ntrailing\r\n.\r\n..\r\n")
    assert f"From: <{alice}>".encode() in stored


async def test_login_rules(relay_server: RelayServer) -> None:
    user = addr(relay_server, "carol0001")

    def attempts() -> list[tuple[int, bytes]]:
        results = []
        for password in (PASSWORD, "wrong-password-1", PASSWORD, "admin"):
            with smtps(relay_server) as client:
                try:
                    results.append(client.login(user, password))
                except smtplib.SMTPAuthenticationError as e:
                    results.append((e.smtp_code, e.smtp_error))
        with smtps(relay_server) as client:
            try:
                client.login(addr(relay_server, "dave00001"), "admin")
            except smtplib.SMTPAuthenticationError as e:
                results.append((e.smtp_code, e.smtp_error))
        return results

    results = await in_thread(attempts)
    failure = (535, b"5.7.8 Error: authentication failed: authentication failure")
    assert results == [
        (235, b"2.7.0 Authentication successful"),
        failure,
        results[0],
        failure,
        failure,
    ]
    assert not await relay_server.app.store.account_exists(addr(relay_server, "dave00001"))


async def test_auth_login_mechanism(relay_server: RelayServer) -> None:
    user = addr(relay_server, "erin00001")

    def login() -> list[tuple[int, bytes]]:
        with smtps(relay_server) as client:
            client.ehlo()
            b64 = base64.b64encode
            return [
                client.docmd("AUTH", "LOGIN"),
                client.docmd(b64(user.encode()).decode()),
                client.docmd(b64(PASSWORD.encode()).decode()),
            ]

    assert await in_thread(login) == [
        (334, b"VXNlcm5hbWU6"),
        (334, b"UGFzc3dvcmQ6"),
        (235, b"2.7.0 Authentication successful"),
    ]


async def test_587_requires_starttls_before_auth(relay_server: RelayServer) -> None:
    user = addr(relay_server, "frank0001")
    plain_auth = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()

    def run() -> tuple[bool, tuple[int, bytes], bool, tuple[int, bytes]]:
        client = submission(relay_server, tls=False)
        offered_before = client.has_extn("auth")
        refused = client.docmd("AUTH", f"PLAIN {plain_auth}")
        client.starttls(context=relay_server.ssl_client_context())
        client.ehlo("[127.0.0.1]")
        offered_after = client.has_extn("auth")
        ok = client.login(user, PASSWORD)
        client.quit()
        return offered_before, refused, offered_after, ok

    before, refused, after, ok = await in_thread(run)
    assert not before and after
    assert refused == (530, b"5.7.0 Must issue a STARTTLS command first")
    assert ok[0] == 235


async def test_mail_without_login_is_refused(relay_server: RelayServer) -> None:
    def run() -> tuple[int, bytes]:
        with smtps(relay_server) as client:
            client.ehlo()
            return client.mail(addr(relay_server, "alice0001"))

    assert await in_thread(run) == (530, b"5.7.0 Authentication required")


async def test_envelope_sender_must_be_login(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")

    def run() -> dict:
        with logged_in(relay_server, "alice0001") as client:
            try:
                client.sendmail(bob, [alice], encrypted(bob))
            except smtplib.SMTPRecipientsRefused as e:
                return e.recipients
        return {}

    refused = await in_thread(run)
    assert refused == {
        alice: (553, f"5.7.1 <{bob}>: Sender address rejected: not owned by user {alice}".encode())
    }


async def test_from_header_must_match_envelope(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")

    def run() -> tuple[int, bytes]:
        with logged_in(relay_server, "alice0001") as client:
            try:
                client.sendmail(alice, [bob], encrypted("someone@example.org"))
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error
        return 0, b""

    code, text = await in_thread(run)
    assert (code, text) == (500, f"5.7.1 Invalid FROM <someone@example.org> for <{alice}>".encode())
    assert await inbox(relay_server, bob) == []


async def test_unencrypted_mail_is_refused(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")

    def run() -> tuple[int, bytes]:
        with logged_in(relay_server, "alice0001") as client:
            try:
                client.sendmail(alice, [bob], plain(alice, bob))
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error
        return 0, b""

    assert await in_thread(run) == (523, b"5.7.1 Encryption Needed: Invalid Unencrypted Mail")
    assert await inbox(relay_server, bob) == []


async def test_securejoin_and_autocrypt_setup_exceptions(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")
    request = securejoin("secure-join: vc-request").replace(
        b"alice0001@[127.0.0.1]", alice.encode()
    )
    setup = autocrypt_setup(alice)

    def run() -> list[object]:
        with logged_in(relay_server, "alice0001") as client:
            outcomes: list[object] = [client.sendmail(alice, [bob], request)]
            outcomes.append(client.sendmail(alice, [alice], setup))
            try:
                client.sendmail(alice, [alice, bob], setup)
            except smtplib.SMTPDataError as e:
                outcomes.append(e.smtp_code)
            return outcomes

    assert await in_thread(run) == [{}, {}, 523]
    assert len(await inbox(relay_server, bob)) == 1
    [stored_setup] = await inbox(relay_server, alice)
    assert b"Subject: [...]\r\n" in stored_setup


async def test_headers_are_cleaned(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")
    extra = (
        b"Received: from phone ([192.0.2.7]) by x\r\n"
        b"X-Mailer: Mailer 1.0\r\nUser-Agent: Agent\r\nX-Originating-IP: [192.0.2.7]\r\n"
        b"DKIM-Signature: v=1; d=example.org; b=abc\r\n"
        b"Authentication-Results: x; dkim=pass\r\n"
    )
    message = extra + encrypted(alice).replace(b"Subject: [...]", b"Subject: secret plans")

    def run() -> None:
        with logged_in(relay_server, "alice0001") as client:
            client.sendmail(alice, [bob], message)

    await in_thread(run)
    [stored] = await inbox(relay_server, bob)
    head = stored.split(b"\r\n\r\n", 1)[0]
    for name in (b"Received", b"X-Mailer", b"User-Agent", b"X-Originating-IP", b"secret plans"):
        assert name not in head
    assert b"DKIM-Signature" not in head and b"Authentication-Results" not in head
    assert b"192.0.2.7" not in stored
    assert b"Subject: [...]\r\n" in head


async def test_remote_recipients_are_queued(relay_server: RelayServer) -> None:
    [alice] = await create_accounts(relay_server, "alice0001")

    def run() -> tuple[int, bytes]:
        with logged_in(relay_server, "alice0001") as client:
            client.mail(alice)
            client.rcpt("friend@remote.example")
            client.rcpt(alice)
            return client.data(encrypted(alice))

    code, text = await in_thread(run)
    [entry] = await relay_server.app.store.queue_list()
    assert code == 250 and text == f"2.0.0 Ok: queued as {entry.id}".encode()
    assert entry.recipients == ["friend@remote.example"] and entry.sender == alice
    assert len(await inbox(relay_server, alice)) == 1


async def test_unknown_local_recipient_is_refused_at_rcpt(relay_server: RelayServer) -> None:
    [alice] = await create_accounts(relay_server, "alice0001")
    ghost = addr(relay_server, "ghost0001")

    def run() -> tuple[int, bytes]:
        with logged_in(relay_server, "alice0001") as client:
            client.mail(alice)
            return client.rcpt(ghost)

    assert await in_thread(run) == (
        550,
        f"5.1.1 <{ghost}>: Recipient address rejected: User unknown".encode(),
    )


async def test_sender_without_exactly_one_at_is_refused(relay_server: RelayServer) -> None:
    await create_accounts(relay_server, "alice0001")

    def run() -> list[tuple[int, bytes]]:
        with logged_in(relay_server, "alice0001") as client:
            return [client.mail("no-at-sign"), client.mail("")]

    assert await in_thread(run) == [
        (500, b"5.1.7 Invalid from address <no-at-sign>"),
        (500, b"5.1.7 Invalid from address <>"),
    ]
