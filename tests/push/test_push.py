"""Push notifications against a local HTTPS stand-in for the notification proxy: one POST per
live token with exactly the token as its body, none for one's own mail, 410 removes a token,
errors are retried on the anchor's schedule, pending items survive a SIGKILL, and a proxy that
hangs delays neither the 250 nor the IDLE EXISTS."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import smtplib
import time
from pathlib import Path

import pytest
import trio

from relay.config import Config, Push
from relay.core import push
from relay.core.tokens import DEVICETOKEN
from relay.log import Logger
from relay.store import PushItem
from tests.helpers import (
    Reachable,
    RelayProcess,
    RelayServer,
    make_account,
    make_config,
    start_relay_process,
    stop_relay_process,
)
from tests.imap.util import PASSWORD, RawClient
from tests.policy.corpus import armor, new_packet, pgp_mime, pkesk_v6
from tests.push.endpoint import Endpoint

TOKENS = ("openpgp:AAAAtoken-one", "openpgp:BBBBtoken-two")


@pytest.fixture
async def endpoint(tmp_path: Path, nursery: trio.Nursery) -> Endpoint:
    proxy = Endpoint(tmp_path / "proxy")
    await nursery.start(proxy.serve)
    return proxy


def with_push(config: Config, proxy: Endpoint) -> Config:
    return dataclasses.replace(config, push=Push(url=proxy.url, ca_file=str(proxy.ca.path)))


@pytest.fixture
def relay_config(tmp_path: Path, endpoint: Endpoint) -> Config:
    return with_push(make_config(tmp_path / "data"), endpoint)


def encrypted(sender: str) -> bytes:
    payload = bytes([2, 9, 2, 16]) + os.urandom(2000)
    return pgp_mime(armor(pkesk_v6() + new_packet(18, payload)), sender=sender)


def send(relay: Reachable, sender: str, rcpt: str) -> None:
    with smtplib.SMTP_SSL(
        relay.host, relay.port("submissions"), context=relay.ssl_client_context(), timeout=30
    ) as smtp:
        smtp.login(sender, PASSWORD)
        smtp.sendmail(sender, [rcpt], encrypted(sender))


async def imap_login(relay: Reachable, addr: str) -> RawClient:
    client = await RawClient.connect(relay)
    await client.read_line()
    (ok,) = await client.command(f"a LOGIN {addr} {PASSWORD}\r\n".encode())
    assert ok.startswith(b"a OK"), ok
    return client


async def set_tokens(relay: Reachable, addr: str, *tokens: str) -> None:
    """As Delta Chat does it: SETMETADATA on INBOX, one token per call."""
    client = await imap_login(relay, addr)
    for n, token in enumerate(tokens):
        (ok,) = await client.command(
            b't%d SETMETADATA INBOX (/private/devicetoken "%s")\r\n' % (n, token.encode())
        )
        assert b"OK" in ok
    await client.aclose()


async def accounts(relay: RelayServer) -> tuple[str, str]:
    alice, bob = (f"{n}@{relay.domain}" for n in ("alice0001", "bob000001"))
    for addr in (alice, bob):
        assert await make_account(relay.app.store, addr, PASSWORD)
    return alice, bob


async def test_one_post_per_token_with_exactly_the_token_and_none_for_own_mail(
    relay_server: RelayServer, endpoint: Endpoint
) -> None:
    alice, bob = await accounts(relay_server)
    await set_tokens(relay_server, bob, *TOKENS)
    await trio.to_thread.run_sync(send, relay_server, bob, bob)  # bob's own message
    await trio.to_thread.run_sync(send, relay_server, alice, bob)
    await endpoint.wait_for(2)
    await trio.sleep(0.3)  # nothing more comes: the own message woke nobody
    assert sorted(endpoint.bodies()) == sorted(t.encode() for t in TOKENS)
    for post in endpoint.posts:
        assert post.target == "/notify"
        assert b"content-type" not in post.headers  # as the anchor: no Content-Type
        assert post.headers[b"content-length"] == str(len(post.body)).encode()
    await trio.to_thread.run_sync(send, relay_server, alice, bob)
    await endpoint.wait_for(4)
    assert endpoint.connections <= push.FIRST_ATTEMPTS  # kept alive, not one per POST
    notifier = relay_server.app.push
    assert notifier is not None
    with trio.fail_after(5):  # the answers are counted once the relay has read them
        while notifier.sent < 4:
            await trio.sleep(0.02)


async def test_410_removes_that_token(relay_server: RelayServer, endpoint: Endpoint) -> None:
    alice, bob = await accounts(relay_server)
    await set_tokens(relay_server, bob, *TOKENS)
    endpoint.answer = lambda body: 410 if body == TOKENS[0].encode() else 200
    await trio.to_thread.run_sync(send, relay_server, alice, bob)
    await endpoint.wait_for(2)
    with trio.fail_after(5):
        while await push_tokens_of(relay_server, bob) != [TOKENS[1]]:
            await trio.sleep(0.05)
    await trio.to_thread.run_sync(send, relay_server, alice, bob)
    await endpoint.wait_for(3)
    await trio.sleep(0.3)
    assert endpoint.bodies()[2:] == [TOKENS[1].encode()]


async def push_tokens_of(relay: RelayServer, addr: str) -> list[str]:
    from relay.core.tokens import read_tokens

    return await read_tokens(relay.app.store, addr)


class FakeClock:
    """The notifier's wall clock, moved by the test (items are stamped by the real one)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_errors_are_retried_after_8_64_512_4096_s_then_dropped(
    relay_server: RelayServer, endpoint: Endpoint
) -> None:
    notifier = relay_server.app.push
    assert notifier is not None
    clock = notifier.clock = FakeClock()
    log = io.StringIO()
    relay_server.app.log = Logger(stream=log, level="info")
    endpoint.answer = lambda body: 500
    alice, bob = await accounts(relay_server)
    await set_tokens(relay_server, bob, TOKENS[0])
    await trio.to_thread.run_sync(send, relay_server, alice, bob)

    async def answered(count: int) -> None:
        await endpoint.wait_for(count)
        with trio.fail_after(5):  # the relay has read the 500 and planned the next try
            while notifier.in_flight:
                await trio.sleep(0.01)

    await answered(1)
    for n, delay in enumerate((8, 64, 512, 4096), start=2):
        clock.now += delay - 1
        notifier.kick()
        await trio.sleep(0.2)
        assert len(endpoint.posts) == n - 1, f"retry {n} came before its time"
        clock.now += 1
        notifier.kick()
        await answered(n)
    clock.now += 10 * 3600
    notifier.kick()
    await trio.sleep(0.3)
    assert len(endpoint.posts) == 5 and notifier.dropped == 1
    logged = log.getvalue()
    assert "push-dropped" in logged
    assert TOKENS[0] not in logged and bob not in logged  # no token, no address in a log line
    with trio.fail_after(5):  # and it is forgotten by the store too
        while await relay_server.app.store.push_pending(DEVICETOKEN, push.live_tokens(clock.now)):
            await trio.sleep(0.1)


async def test_the_five_hour_deadline_counts_from_the_item_not_the_restart(
    relay_server: RelayServer, endpoint: Endpoint
) -> None:
    notifier = relay_server.app.push
    assert notifier is not None
    clock = notifier.clock = FakeClock()
    endpoint.answer = lambda body: 500
    old = PushItem("0123456789abcdef", "bob000001@x", TOKENS[0], int(clock.now) - 5 * 3600 + 5)
    notifier.add([old])  # as if loaded at a restart, almost 5 hours old
    await endpoint.wait_for(1)
    await trio.sleep(0.2)
    assert notifier.dropped == 1  # its next try, 8 s on, would be past the deadline


async def test_a_hanging_proxy_delays_neither_the_250_nor_the_idle_exists(
    relay_server: RelayServer, endpoint: Endpoint
) -> None:
    endpoint.answer = lambda body: None  # accepts, never answers
    alice, bob = await accounts(relay_server)
    await set_tokens(relay_server, bob, *TOKENS)
    idle = await imap_login(relay_server, bob)
    await idle.command(b"s SELECT INBOX\r\n")
    await idle.send(b"i IDLE\r\n")
    assert await idle.read_line() == b"+ idling\r\n"
    for n in range(1, 4):
        with trio.fail_after(10):  # a hanging POST would take 60 s
            await trio.to_thread.run_sync(send, relay_server, alice, bob)
            assert await idle.read_line() == b"* %d EXISTS\r\n" % n
    await idle.aclose()


async def test_pending_items_are_sent_after_a_sigkill(tmp_path: Path, endpoint: Endpoint) -> None:
    config = with_push(make_config(tmp_path / "data"), endpoint)
    endpoint.answer = lambda body: None  # nothing gets through before the kill
    relay: RelayProcess = start_relay_process(config, tmp_path / "relay.toml")
    try:
        alice, bob = (f"{n}@{relay.domain}" for n in ("alice0001", "bob000001"))
        for addr in (alice, bob):
            await (await imap_login(relay, addr)).aclose()  # first logins create them
        await set_tokens(relay, bob, *TOKENS)
        await trio.to_thread.run_sync(send, relay, alice, bob)
        await endpoint.wait_for(2)
        relay.process.send_signal(signal.SIGKILL)
        relay.process.wait()
        endpoint.answer = lambda body: 200
        relay = start_relay_process(config, tmp_path / "relay.toml")
        await endpoint.wait_for(4, timeout=20)
        assert sorted(endpoint.bodies()[2:]) == sorted(t.encode() for t in TOKENS)
    finally:
        stop_relay_process(relay)


async def test_push_off_is_not_advertised(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path / "data"), push=Push(url=""))
    from relay.server import serve

    async with trio.open_nursery() as nursery:
        listening = await nursery.start(lambda task_status: serve(config, task_status=task_status))
        relay = RelayServer(config=config, app=listening.app)
        alice = f"alice0001@{relay.domain}"
        client = await imap_login(relay, alice)
        [caps, _] = await client.command(b"c CAPABILITY\r\n")
        assert b"XCHATMAIL" in caps and b"XDELTAPUSH" not in caps
        lines = await client.command(
            b'm GETMETADATA "" /shared/vendor/deltachat/maxsmtprecipients\r\n'
        )
        assert lines[0] == b'* METADATA "" (/shared/vendor/deltachat/maxsmtprecipients NIL)\r\n'
        assert relay.app.push is None  # and no notifier runs
        await client.aclose()
        nursery.cancel_scope.cancel()
