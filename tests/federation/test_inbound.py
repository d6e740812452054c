"""Inbound POST /mxdeliv on a running relay (127.0.0.2), over HTTPS as another relay sends it."""

from __future__ import annotations

import dataclasses
import http.client
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from relay.config import Limits
from tests.federation.conftest import SENDER_IP
from tests.federation.mail import encrypted, plain
from tests.federation.pair import Relay, relay_config
from tests.helpers import SERVICES, free_ports

ANNA = "anna12345@[127.0.0.3]"
BOB = "bob123456@[127.0.0.2]"
CAROL = "carol1234@[127.0.0.2]"
MAX_SIZE = 100_000
TOO_BIG = b"552 Message exceeds maximum size"

StartReceiver = Callable[..., Awaitable[Relay]]


@pytest.fixture
def start_receiver(tmp_path: Path, nursery: trio.Nursery) -> StartReceiver:
    """Start a receiving relay with these [federation] keys; bob and carol have accounts."""

    async def start(**fed: object) -> Relay:
        ports = dict(zip(SERVICES, free_ports(len(SERVICES), SENDER_IP), strict=True))
        config = relay_config(tmp_path / "receiver", SENDER_IP, ports, **fed)
        relay = Relay(dataclasses.replace(config, limits=Limits(max_message_size=MAX_SIZE)))
        await relay.start(nursery)
        for addr in (BOB, CAROL):
            await relay.account(addr)
        return relay

    return start


@pytest.fixture
async def receiver(start_receiver: StartReceiver) -> Relay:
    return await start_receiver()


def headers(sender: str, *recipients: str) -> list[tuple[str, str]]:
    return [("X-Mail-From", sender)] + [("X-Mail-To", r) for r in recipients]


def stuffed(message: bytes) -> bytes:
    return message.replace(b"\r\n.", b"\r\n..")


def connect(relay: Relay) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(
        relay.host, relay.config.listen.https, context=relay.client_context(), timeout=10
    )


async def post(
    relay: Relay, hdrs: list[tuple[str, str]], body: bytes, length: int | None = None
) -> tuple[int, bytes]:
    """POST /mxdeliv with `hdrs` (repeated names allowed); `length` declares a Content-Length
    and sends no body, as a sender that waits for an early answer."""

    def run() -> tuple[int, bytes]:
        conn = connect(relay)
        conn.putrequest("POST", "/mxdeliv")
        for name, value in hdrs:
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body) if length is None else length))
        conn.endheaders(body if length is None else None)
        response = conn.getresponse()
        return response.status, response.read()

    return await trio.to_thread.run_sync(run)


async def test_every_recipient_gets_the_message_unstuffed(receiver: Relay) -> None:
    message = encrypted(ANNA, [BOB, CAROL]) + b".dot line\r\n"
    status, body = await post(receiver, headers(ANNA, BOB, CAROL), stuffed(message))
    assert (status, body) == (200, b"250 OK")
    for addr in (BOB, CAROL):
        assert await receiver.fetch_inbox(addr) == [message]


async def test_recipients_in_one_comma_separated_header_and_a_null_sender(
    receiver: Relay,
) -> None:
    message = encrypted(ANNA, [BOB, CAROL])
    status, _ = await post(receiver, [("x-mail-to", f"<{BOB}>, {CAROL}")], message)
    assert status == 200
    for addr in (BOB, CAROL):
        assert await receiver.fetch_inbox(addr) == [message]


async def test_unencrypted_mail_is_refused_with_523(receiver: Relay) -> None:
    status, body = await post(receiver, headers(ANNA, BOB), plain(ANNA, [BOB]))
    assert (status, body) == (400, b"523 5.7.1 Encryption Needed: Invalid Unencrypted Mail")
    assert await receiver.fetch_inbox(BOB) == []


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
async def test_envelope_refusals(receiver: Relay, hdrs, reply: bytes) -> None:
    status, body = await post(receiver, hdrs, encrypted(ANNA, [BOB]))
    assert (status, body) == (400, reply)
    assert await receiver.fetch_inbox(BOB) == []


@pytest.mark.parametrize(
    "mangle",
    [
        lambda m: m.replace(b"\r\n", b"\n"),  # bare LF
        lambda m: m + b".\r\nMAIL FROM:<x@y>\r\n",  # an unstuffed dot line: smuggling
        lambda m: m.rstrip(b"\r\n"),  # no final CRLF
        lambda m: m + b"x" * 1200 + b"\r\n",  # a line over 1000 octets
    ],
)
async def test_malformed_transmission_form_is_invalid_data(receiver: Relay, mangle) -> None:
    status, body = await post(receiver, headers(ANNA, BOB), mangle(encrypted(ANNA, [BOB])))
    assert (status, body) == (400, b"500 Invalid DATA")
    assert await receiver.fetch_inbox(BOB) == []


async def test_a_message_over_the_limit_is_413_with_552(receiver: Relay) -> None:
    """Refused as soon as the declared length is known; the body says why in SMTP terms."""
    assert await post(receiver, headers(ANNA, BOB), b"", length=MAX_SIZE + 1) == (413, TOO_BIG)


async def test_a_chunked_body_over_the_limit_is_413_with_552(receiver: Relay) -> None:
    """A sender that declares no length is cut off once the body passes the limit."""

    def run() -> tuple[int, bytes]:
        conn = connect(receiver)
        conn.putrequest("POST", "/mxdeliv")
        for name, value in headers(ANNA, BOB):
            conn.putheader(name, value)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"x" * 998 + b"\r\n"
        for _ in range(MAX_SIZE // len(chunk) + 1):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        return response.status, response.read()

    assert await trio.to_thread.run_sync(run) == (413, TOO_BIG)


async def test_unknown_users_are_refused_unless_someone_else_takes_it(receiver: Relay) -> None:
    ghost = "ghost1234@[127.0.0.2]"
    status, body = await post(receiver, headers(ANNA, ghost), encrypted(ANNA, [ghost]))
    assert (status, body) == (
        400,
        f"550 5.1.1 <{ghost}>: Recipient address rejected: User unknown".encode(),
    )
    status, _ = await post(receiver, headers(ANNA, ghost, BOB), encrypted(ANNA, [ghost, BOB]))
    assert status == 200 and len(await receiver.fetch_inbox(BOB)) == 1
    assert not await receiver.app.store.account_exists(ghost)


async def test_policy_blocked_senders_get_403(start_receiver: StartReceiver) -> None:
    relay = await start_receiver(policy_domains=["127.0.0.3"])
    status, body = await post(relay, headers(ANNA, BOB), encrypted(ANNA, [BOB]))
    assert (status, body) == (403, b"550 5.7.1 Federation policy rejection")
    assert await relay.fetch_inbox(BOB) == []


async def test_a_storage_failure_asks_the_sender_to_retry(
    receiver: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    class BrokenStore:
        def __init__(self, store):
            self._store = store

        async def commit_delivery(self, *args, **kwargs):
            raise OSError("disk on fire")

        def __getattr__(self, name):
            return getattr(self._store, name)

    with monkeypatch.context() as patched:
        patched.setattr(receiver.app, "store", BrokenStore(receiver.app.store))
        status, body = await post(receiver, headers(ANNA, BOB), encrypted(ANNA, [BOB]))
    assert (status, body) == (500, b"451 4.3.0 Error: queue file write error")
    assert await receiver.fetch_inbox(BOB) == []
