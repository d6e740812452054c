"""The outbound queue of a running relay (127.0.0.2) against peers on 127.0.0.3: /mxdeliv,
SMTP fallback, retries, bounces. Mail enters the queue as a client submits it over SMTPS."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from relay import outbound
from relay.outbound.worker import RESCAN_SECONDS
from tests.federation.conftest import PEER_IP, SENDER_IP, closed_port, wait_until
from tests.federation.mail import encrypted
from tests.federation.pair import ChildRelay, Relay, relay_config
from tests.federation.peers import MxdelivPeer, SMTPPeer, self_signed_context
from tests.helpers import SERVICES, free_ports

SENDER = "alice1234@[127.0.0.2]"
BOB = "bob123456@[127.0.0.3]"
CAROL = "carol1234@[127.0.0.3]"

StartSender = Callable[..., Awaitable[Relay]]


def own_ports() -> dict[str, int]:
    return dict(zip(SERVICES, free_ports(len(SERVICES), SENDER_IP), strict=True))


@pytest.fixture
def start_sender(tmp_path: Path, nursery: trio.Nursery) -> StartSender:
    """Start the sending relay with these [federation] keys; alice has an account there."""

    async def start(**fed: object) -> Relay:
        relay = Relay(relay_config(tmp_path / "sender", SENDER_IP, own_ports(), **fed))
        await relay.start(nursery)
        await relay.account(SENDER)
        return relay

    return start


def with_dot_line(message: bytes) -> bytes:
    return message + b".a line that starts with a dot\r\n"


async def test_mxdeliv_carries_all_recipients_of_a_domain_in_one_post(
    start_sender: StartSender, nursery: trio.Nursery, tmp_path: Path
) -> None:
    peer = MxdelivPeer(self_signed_context(tmp_path, PEER_IP))
    relay = await start_sender(
        peer_https_port=await peer.start(PEER_IP, nursery), peer_smtp_port=closed_port()
    )
    message = with_dot_line(encrypted(SENDER, [BOB, CAROL]))
    await relay.submit(SENDER, [BOB, CAROL], message)
    await wait_until(relay.queue_empty)
    [post] = peer.posts
    assert post.values("x-mail-from") == [SENDER]
    assert post.values("x-mail-to") == [BOB, CAROL]
    # SMTP transmission form: the dot line is stuffed, CRLF throughout
    assert post.body == message.replace(b"\r\n.a line", b"\r\n..a line")


async def test_a_submitted_message_leaves_at_once_not_at_the_next_queue_scan(
    start_sender: StartSender, nursery: trio.Nursery, tmp_path: Path
) -> None:
    peer = MxdelivPeer(self_signed_context(tmp_path, PEER_IP))
    relay = await start_sender(
        peer_https_port=await peer.start(PEER_IP, nursery), peer_smtp_port=closed_port()
    )
    await trio.sleep(0.5)  # the worker's first scan found nothing: it now waits RESCAN_SECONDS
    await relay.submit(SENDER, [BOB], encrypted(SENDER, [BOB]))
    await wait_until(relay.queue_empty, timeout=RESCAN_SECONDS / 2)
    assert len(peer.posts) == 1


# The SMTP fallback itself (STARTTLS, per-recipient and temporary refusals, multi-line replies,
# pipelining or not, a peer without STARTTLS) is tested against Postfix: test_outbound_postfix.py.
# The canned peers here inject faults: refusals over /mxdeliv, answers that are no SMTP reply.


async def test_a_final_mxdeliv_refusal_bounces_without_trying_smtp(
    start_sender: StartSender, nursery: trio.Nursery, tmp_path: Path
) -> None:
    ctx = self_signed_context(tmp_path, PEER_IP)
    web = MxdelivPeer(ctx, answer=(400, b"523 Encryption Needed: Invalid Unencrypted Mail"))
    mx = SMTPPeer(ctx)
    relay = await start_sender(
        peer_https_port=await web.start(PEER_IP, nursery),
        peer_smtp_port=await mx.start(PEER_IP, nursery),
    )
    await relay.submit(SENDER, [BOB], encrypted(SENDER, [BOB]))
    await wait_until(relay.queue_empty)
    assert len(web.posts) == 1 and not mx.messages
    [bounce] = await relay.wait_for_mail(SENDER)
    assert b"523 Encryption Needed: Invalid Unencrypted Mail" in bounce


async def test_an_http_answer_that_is_no_smtp_reply_falls_back_to_smtp(
    start_sender: StartSender, nursery: trio.Nursery, tmp_path: Path
) -> None:
    ctx = self_signed_context(tmp_path, PEER_IP)
    web = MxdelivPeer(ctx, answer=(404, b"<html>not found</html>"))
    mx = SMTPPeer(ctx)
    relay = await start_sender(
        peer_https_port=await web.start(PEER_IP, nursery),
        peer_smtp_port=await mx.start(PEER_IP, nursery),
    )
    await relay.submit(SENDER, [BOB], encrypted(SENDER, [BOB]))
    await wait_until(relay.queue_empty)
    assert len(web.posts) == 1 and len(mx.messages) == 1


async def test_a_temporary_refusal_keeps_the_message_queued(
    start_sender: StartSender, nursery: trio.Nursery, tmp_path: Path
) -> None:
    web = MxdelivPeer(self_signed_context(tmp_path, PEER_IP), answer=(400, b"451 4.3.0 Try later"))
    relay = await start_sender(
        peer_https_port=await web.start(PEER_IP, nursery), peer_smtp_port=closed_port()
    )
    await relay.submit(SENDER, [BOB], encrypted(SENDER, [BOB]))
    await wait_until(relay.tried)
    [entry] = await relay.queue()
    assert entry.last_error == "451 4.3.0 Try later"
    assert entry.recipients == [BOB]
    assert await relay.fetch_inbox(SENDER) == []  # no bounce for a temporary refusal


async def test_both_ports_closed_then_reopened_delivers_on_retry(
    start_sender: StartSender, nursery: trio.Nursery, tmp_path: Path
) -> None:
    https, smtp = closed_port(), closed_port()
    relay = await start_sender(peer_https_port=https, peer_smtp_port=smtp, retry_initial=1)
    await relay.submit(SENDER, [BOB], encrypted(SENDER, [BOB]))
    await wait_until(relay.tried)
    [entry] = await relay.queue()
    assert entry.last_error.startswith("421 Failed to connect to any mail server; last attempt to")
    peer = MxdelivPeer(self_signed_context(tmp_path, PEER_IP))
    await peer.start(PEER_IP, nursery, port=https)
    await wait_until(relay.queue_empty, timeout=15)
    assert len(peer.posts) == 1


async def test_a_retry_comes_when_it_is_due_not_at_the_next_queue_scan(
    start_sender: StartSender,
) -> None:
    relay = await start_sender(
        peer_https_port=closed_port(), peer_smtp_port=closed_port(), retry_initial=1
    )
    await relay.submit(SENDER, [BOB], encrypted(SENDER, [BOB]))
    await wait_until(relay.tried)

    async def tried_twice() -> bool:
        return (await relay.queue())[0].attempts >= 2

    await wait_until(tried_twice, timeout=RESCAN_SECONDS / 2)


async def test_queue_lifetime_over_bounces_with_the_last_error(
    start_sender: StartSender,
) -> None:
    relay = await start_sender(
        peer_https_port=closed_port(), peer_smtp_port=closed_port(), queue_lifetime=1
    )
    await relay.submit(SENDER, [BOB], encrypted(SENDER, [BOB]))
    await wait_until(relay.queue_empty)
    [bounce] = await relay.wait_for_mail(SENDER)
    assert b"421 Failed to connect to any mail server" in bounce
    assert b"Action: failed" in bounce


async def test_a_bounce_is_never_bounced(
    start_sender: StartSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = await start_sender(
        peer_https_port=closed_port(), peer_smtp_port=closed_port(), queue_lifetime=1
    )
    # Every delivery the store commits from here on: a bounce would be one (local or queued).
    committed: list[object] = []
    commit = relay.app.store.commit_delivery

    async def recording_commit(delivery, *args, **kwargs):  # type: ignore[no-untyped-def]
        committed.append(delivery)
        return await commit(delivery, *args, **kwargs)

    monkeypatch.setattr(relay.app.store, "commit_delivery", recording_commit)
    # Only the relay itself queues mail with a null sender (a bounce to a remote sender).
    bounce = encrypted("MAILER-DAEMON@[127.0.0.2]", [BOB])
    await relay.app.store.enqueue("", [BOB], bounce)
    outbound.kick(relay.app)
    await wait_until(relay.queue_empty)
    assert relay.log_lines("queue-attempt")  # it was tried, and given up
    assert committed == []  # no report, neither into a mailbox nor into the queue
    assert await relay.queue() == []
    assert await relay.fetch_inbox(SENDER) == []


async def test_federation_policy_refuses_blocked_domains_without_connecting(
    start_sender: StartSender, nursery: trio.Nursery, tmp_path: Path
) -> None:
    peer = MxdelivPeer(self_signed_context(tmp_path, PEER_IP))
    relay = await start_sender(
        peer_https_port=await peer.start(PEER_IP, nursery),
        peer_smtp_port=closed_port(),
        policy="ACCEPT",
        policy_domains=["[127.0.0.3]"],
    )
    await relay.submit(SENDER, [BOB], encrypted(SENDER, [BOB]))
    await wait_until(relay.queue_empty)
    assert not peer.posts
    [bounce] = await relay.wait_for_mail(SENDER)
    assert b"550 5.7.1 Federation policy rejection" in bounce


async def test_allow_list_mode_lets_only_listed_domains_through(
    start_sender: StartSender, nursery: trio.Nursery, tmp_path: Path
) -> None:
    peer = MxdelivPeer(self_signed_context(tmp_path, PEER_IP))
    relay = await start_sender(
        peer_https_port=await peer.start(PEER_IP, nursery),
        peer_smtp_port=closed_port(),
        policy="REJECT",
        policy_domains=["127.0.0.3"],
    )
    await relay.submit(SENDER, [BOB], encrypted(SENDER, [BOB]))
    await wait_until(relay.queue_empty)
    assert len(peer.posts) == 1


async def test_domains_are_delivered_in_parallel(
    start_sender: StartSender, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A slow peer does not hold up another domain of the same message."""
    # The slow peer answers only after the fast one has its copy: delivered one domain after
    # the other, the fast domain would wait for ever (here: until the backstop).
    slow = MxdelivPeer(self_signed_context(tmp_path, PEER_IP), hold=trio.Event())
    fast = MxdelivPeer(self_signed_context(tmp_path, "127.0.0.4"))
    port = await slow.start(PEER_IP, nursery)
    await fast.start("127.0.0.4", nursery, port=port)
    relay = await start_sender(peer_https_port=port, peer_smtp_port=closed_port())
    dave = "dave12345@[127.0.0.4]"
    await relay.submit(SENDER, [BOB, dave], encrypted(SENDER, [BOB, dave]))
    with trio.fail_after(60):  # a backstop only
        while not (fast.posts and slow.posts):
            await trio.sleep(0.02)
    assert fast.posts[0].values("x-mail-to") == [dave]
    assert slow.posts[0].values("x-mail-to") == [BOB]  # and still waiting for its answer
    assert slow.hold is not None
    slow.hold.set()
    await wait_until(relay.queue_empty)
    assert len(slow.posts) == 1 and len(fast.posts) == 1


async def test_a_relay_killed_mid_delivery_sends_the_message_again_after_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A crash while the peer is still reading loses nothing: the restarted relay sends again."""
    peer = MxdelivPeer(self_signed_context(tmp_path, PEER_IP), delay=30.0)
    port = await peer.start(PEER_IP, nursery)
    config = relay_config(
        tmp_path / "sender",
        SENDER_IP,
        own_ports(),
        peer_https_port=port,
        peer_smtp_port=closed_port(),
    )
    relay = ChildRelay(config)
    await relay.start()
    try:
        await relay.submit(SENDER, [BOB], encrypted(SENDER, [BOB]))
        with trio.fail_after(10):
            while not peer.posts:
                await trio.sleep(0.02)
        await relay.crash()
        peer.delay = 0.0
        await relay.start()
        with trio.fail_after(20):
            while len(peer.posts) < 2:
                await trio.sleep(0.05)
        assert peer.posts[0].body == peer.posts[1].body
        with trio.fail_after(10):
            while (listed := await relay.command("queue", "list")).stdout.strip() != (
                "0 message(s) in the queue"
            ):
                await trio.sleep(0.1)
        assert listed.returncode == 0
    finally:
        await relay.stop()
