"""Inbound /mxdeliv checks, called as the web server calls them, with a real store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from relay.app import App
from relay.federation import dkim
from relay.federation.inbound import mxdeliv
from relay.federation.origin import keys
from tests.federation.conftest import configure, inbox, open_app, with_federation
from tests.federation.mail import encrypted, plain
from tests.federation.peers import DNSServer
from tests.helpers import make_config

ANNA = "anna12345@[127.0.0.3]"
BOB = "bob123456@[127.0.0.2]"
CAROL = "carol1234@[127.0.0.2]"


async def accounts(app: App, *addrs: str) -> None:
    for addr in addrs:
        assert (await app.store.login(addr, "password-for-tests", create=True)).ok


def headers(sender: str, *recipients: str) -> list[tuple[str, str]]:
    return [("X-Mail-From", sender)] + [("X-Mail-To", r) for r in recipients]


def stuffed(message: bytes) -> bytes:
    return message.replace(b"\r\n.", b"\r\n..")


async def test_every_recipient_gets_the_message_unstuffed(app: App) -> None:
    await accounts(app, BOB, CAROL)
    message = encrypted(ANNA, [BOB, CAROL]) + b".dot line\r\n"
    status, body = await mxdeliv(app, headers(ANNA, BOB, CAROL), stuffed(message))
    assert (status, body) == (200, b"250 OK")
    for addr in (BOB, CAROL):
        assert await inbox(app, addr) == [message]


async def test_recipients_in_one_comma_separated_header_and_a_null_sender(app: App) -> None:
    await accounts(app, BOB, CAROL)
    message = encrypted(ANNA, [BOB, CAROL])
    status, _ = await mxdeliv(app, [("x-mail-to", f"<{BOB}>, {CAROL}")], message)
    assert status == 200
    assert len(await inbox(app, BOB)) == len(await inbox(app, CAROL)) == 1


async def test_unencrypted_mail_is_refused_with_523(app: App) -> None:
    await accounts(app, BOB)
    status, body = await mxdeliv(app, headers(ANNA, BOB), plain(ANNA, [BOB]))
    assert (status, body) == (400, b"523 Encryption Needed: Invalid Unencrypted Mail")
    assert await inbox(app, BOB) == []


@pytest.mark.parametrize(
    ("hdrs", "reply"),
    [
        ([("X-Mail-From", ANNA)], b"554 5.5.1 Error: no valid recipients"),
        (
            headers(ANNA, "someone12@[127.0.0.9]"),
            b"554 5.7.1 <someone12@[127.0.0.9]>: Relay access denied",
        ),
        (
            headers(ANNA, BOB, "someone12@example.org"),
            b"554 5.7.1 <someone12@example.org>: Relay access denied",
        ),
        (headers(ANNA, "no-at-sign"), b"501 5.1.3 Bad recipient address syntax"),
        (headers("two@x@y z", BOB), b"501 5.1.7 Bad sender address syntax"),
    ],
)
async def test_envelope_refusals(app: App, hdrs, reply: bytes) -> None:
    await accounts(app, BOB)
    status, body = await mxdeliv(app, hdrs, encrypted(ANNA, [BOB]))
    assert (status, body) == (400, reply)
    assert await inbox(app, BOB) == []


@pytest.mark.parametrize(
    "mangle",
    [
        lambda m: m.replace(b"\r\n", b"\n"),  # bare LF
        lambda m: m + b".\r\nMAIL FROM:<x@y>\r\n",  # an unstuffed dot line: smuggling
        lambda m: m.rstrip(b"\r\n"),  # no final CRLF
        lambda m: m + b"x" * 1200 + b"\r\n",  # a line over 1000 octets
    ],
)
async def test_malformed_transmission_form_is_invalid_data(app: App, mangle) -> None:
    await accounts(app, BOB)
    status, body = await mxdeliv(app, headers(ANNA, BOB), mangle(encrypted(ANNA, [BOB])))
    assert (status, body) == (400, b"500 Invalid DATA")


async def test_too_large_is_413_with_552(app: App) -> None:
    await accounts(app, BOB)
    limit = app.config.limits.max_message_size
    message = encrypted(ANNA, [BOB]) + (b"x" * 998 + b"\r\n") * (limit // 1000 + 1)
    assert await mxdeliv(app, headers(ANNA, BOB), message) == (
        413,
        b"552 Message exceeds maximum size",
    )


async def test_unknown_users_are_refused_unless_someone_else_takes_it(app: App) -> None:
    await accounts(app, BOB)
    ghost = "ghost1234@[127.0.0.2]"
    status, body = await mxdeliv(app, headers(ANNA, ghost), encrypted(ANNA, [ghost]))
    assert (status, body) == (
        400,
        f"550 5.1.1 <{ghost}>: Recipient address rejected: User unknown".encode(),
    )
    status, _ = await mxdeliv(app, headers(ANNA, ghost, BOB), encrypted(ANNA, [ghost, BOB]))
    assert status == 200 and len(await inbox(app, BOB)) == 1


async def test_policy_blocked_senders_get_403(app: App) -> None:
    await accounts(app, BOB)
    configure(app, policy_domains=["127.0.0.3"])
    status, body = await mxdeliv(app, headers(ANNA, BOB), encrypted(ANNA, [BOB]))
    assert (status, body) == (403, b"550 5.7.1 Federation policy rejection")


async def test_a_storage_failure_asks_the_sender_to_retry(app: App) -> None:
    await accounts(app, BOB)

    class BrokenStore:
        def __init__(self, store):
            self._store = store

        async def deliver(self, *args, **kwargs):
            raise OSError("disk on fire")

        def __getattr__(self, name):
            return getattr(self._store, name)

    broken = dataclasses.replace(app, store=BrokenStore(app.store))
    status, body = await mxdeliv(broken, headers(ANNA, BOB), encrypted(ANNA, [BOB]))
    assert (status, body) == (500, b"451 4.3.0 Error: queue file write error")


async def test_dns_name_senders_need_an_aligned_dkim_signature(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    dns = DNSServer()
    await dns.start("127.0.0.1", nursery)
    keys._keys.clear()
    alpha = with_federation(
        dataclasses.replace(make_config(tmp_path / "alpha"), mail_domain="alpha.test"),
        resolver=dns.address,
    )
    beta = with_federation(
        dataclasses.replace(make_config(tmp_path / "beta"), mail_domain="beta.test"),
        resolver=dns.address,
    )
    record = dkim.dkim_dns_record(alpha)
    dns.records[("opendkim._domainkey.alpha.test", "TXT")] = [record.split("( ")[1].rstrip(" )")]
    anna, bob = "anna12345@alpha.test", "bob123456@beta.test"
    async with open_app(beta) as app:
        await accounts(app, bob)
        message = encrypted(anna, [bob])
        assert await mxdeliv(app, headers(anna, bob), message) == (
            400,
            b"554 5.7.1 No DKIM signature found",
        )
        signed = await dkim.sign(alpha, message)
        assert await mxdeliv(app, headers(anna, bob), signed) == (200, b"250 OK")
        [stored] = await inbox(app, bob)
        assert b"DKIM-Signature" not in stored  # transit headers go before storage
        tampered = signed.replace(b"OpenPGP encrypted message", b"OpenPGP encrypted messagE")
        assert await mxdeliv(app, headers(anna, bob), tampered) == (
            400,
            b"554 5.7.1 No valid DKIM signature found",
        )
