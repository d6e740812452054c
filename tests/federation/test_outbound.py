"""The outbound queue against peers on 127.0.0.3: /mxdeliv, SMTP fallback, retries, bounces."""

from __future__ import annotations

from email import message_from_bytes
from pathlib import Path

import trio

from relay.app import App
from relay.federation.outbound import Outbound
from tests.federation.conftest import (
    PEER_IP,
    closed_port,
    configure,
    inbox,
    queue_empty,
    wait_until,
)
from tests.federation.mail import encrypted
from tests.federation.peers import MxdelivPeer, SMTPPeer, self_signed_context

SENDER = "alice1234@[127.0.0.2]"
BOB = "bob123456@[127.0.0.3]"
CAROL = "carol1234@[127.0.0.3]"


async def local_account(app: App, addr: str = SENDER) -> None:
    assert (await app.store.login(addr, "password-for-tests", create=True)).ok


def with_dot_line(message: bytes) -> bytes:
    return message + b".a line that starts with a dot\r\n"


async def test_mxdeliv_carries_all_recipients_of_a_domain_in_one_post(
    app: App, worker: Outbound, nursery: trio.Nursery, tmp_path: Path
) -> None:
    peer = MxdelivPeer(self_signed_context(tmp_path, PEER_IP))
    configure(app, peer_https_port=await peer.start(PEER_IP, nursery), peer_smtp_port=closed_port())
    message = with_dot_line(encrypted(SENDER, [BOB, CAROL]))
    await app.store.enqueue(SENDER, [BOB, CAROL], message)
    worker.kick()
    await wait_until(lambda: queue_empty(app))
    [post] = peer.posts
    assert post.values("x-mail-from") == [SENDER]
    assert post.values("x-mail-to") == [BOB, CAROL]
    # SMTP transmission form: the dot line is stuffed, CRLF throughout
    assert post.body == message.replace(b"\r\n.a line", b"\r\n..a line")


async def test_smtp_fallback_with_starttls_when_https_is_closed(
    app: App, worker: Outbound, nursery: trio.Nursery, tmp_path: Path
) -> None:
    peer = SMTPPeer(self_signed_context(tmp_path, PEER_IP))
    configure(app, peer_https_port=closed_port(), peer_smtp_port=await peer.start(PEER_IP, nursery))
    message = with_dot_line(encrypted(SENDER, [BOB]))
    await app.store.enqueue(SENDER, [BOB], message)
    worker.kick()
    await wait_until(lambda: queue_empty(app))
    [got] = peer.messages
    assert got.tls and got.sender == SENDER and got.recipients == (BOB,)
    assert got.content == message


async def test_a_peer_without_starttls_gets_nothing(
    app: App, worker: Outbound, nursery: trio.Nursery, tmp_path: Path
) -> None:
    peer = SMTPPeer(self_signed_context(tmp_path, PEER_IP), offer_tls=False)
    configure(app, peer_https_port=closed_port(), peer_smtp_port=await peer.start(PEER_IP, nursery))
    await app.store.enqueue(SENDER, [BOB], encrypted(SENDER, [BOB]))
    worker.kick()

    async def tried() -> bool:
        return (await app.store.queue_list())[0].attempts == 1

    await wait_until(tried)
    [entry] = await app.store.queue_list()
    assert "STARTTLS not offered" in entry.last_error and not peer.messages


async def test_per_recipient_smtp_results_and_a_bounce_for_the_refused_one(
    app: App, worker: Outbound, nursery: trio.Nursery, tmp_path: Path
) -> None:
    await local_account(app)
    peer = SMTPPeer(
        self_signed_context(tmp_path, PEER_IP),
        refuse=lambda addr: (550, "5.1.1 No such user") if addr == CAROL else None,
    )
    configure(app, peer_https_port=closed_port(), peer_smtp_port=await peer.start(PEER_IP, nursery))
    message = encrypted(SENDER, [BOB, CAROL])
    await app.store.enqueue(SENDER, [BOB, CAROL], message)
    worker.kick()
    await wait_until(lambda: queue_empty(app))
    assert [m.recipients for m in peer.messages] == [(BOB,)]
    [bounce] = await inbox(app, SENDER)
    report = message_from_bytes(bounce)
    assert report.get_content_type() == "multipart/report"
    assert report["From"].startswith("Mail Delivery System <MAILER-DAEMON@[127.0.0.2]>")
    status = report.get_payload(1).as_string()
    assert f"Final-Recipient: rfc822; {CAROL}" in status
    assert "Status: 5.1.1" in status and "550 5.1.1 No such user" in status
    original_id = message_from_bytes(message)["Message-ID"]
    assert original_id in report.get_payload(2).as_string()


async def test_a_final_mxdeliv_refusal_bounces_without_trying_smtp(
    app: App, worker: Outbound, nursery: trio.Nursery, tmp_path: Path
) -> None:
    await local_account(app)
    ctx = self_signed_context(tmp_path, PEER_IP)
    web = MxdelivPeer(ctx, answer=(400, b"523 Encryption Needed: Invalid Unencrypted Mail"))
    mx = SMTPPeer(ctx)
    configure(
        app,
        peer_https_port=await web.start(PEER_IP, nursery),
        peer_smtp_port=await mx.start(PEER_IP, nursery),
    )
    await app.store.enqueue(SENDER, [BOB], encrypted(SENDER, [BOB]))
    worker.kick()
    await wait_until(lambda: queue_empty(app))
    assert len(web.posts) == 1 and not mx.messages
    [bounce] = await inbox(app, SENDER)
    assert b"523 Encryption Needed: Invalid Unencrypted Mail" in bounce


async def test_an_http_answer_that_is_no_smtp_reply_falls_back_to_smtp(
    app: App, worker: Outbound, nursery: trio.Nursery, tmp_path: Path
) -> None:
    ctx = self_signed_context(tmp_path, PEER_IP)
    web = MxdelivPeer(ctx, answer=(404, b"<html>not found</html>"))
    mx = SMTPPeer(ctx)
    configure(
        app,
        peer_https_port=await web.start(PEER_IP, nursery),
        peer_smtp_port=await mx.start(PEER_IP, nursery),
    )
    await app.store.enqueue(SENDER, [BOB], encrypted(SENDER, [BOB]))
    worker.kick()
    await wait_until(lambda: queue_empty(app))
    assert len(web.posts) == 1 and len(mx.messages) == 1


async def test_a_temporary_refusal_keeps_the_message_queued(
    app: App, worker: Outbound, nursery: trio.Nursery, tmp_path: Path
) -> None:
    web = MxdelivPeer(self_signed_context(tmp_path, PEER_IP), answer=(400, b"451 4.3.0 Try later"))
    configure(app, peer_https_port=await web.start(PEER_IP, nursery), peer_smtp_port=closed_port())
    await app.store.enqueue(SENDER, [BOB], encrypted(SENDER, [BOB]))
    worker.kick()

    async def tried() -> bool:
        return (await app.store.queue_list())[0].attempts >= 1

    await wait_until(tried)
    [entry] = await app.store.queue_list()
    assert entry.last_error == "451 4.3.0 Try later"
    assert entry.recipients == [BOB]


async def test_both_ports_closed_then_reopened_delivers_on_retry(
    app: App, worker: Outbound, nursery: trio.Nursery, tmp_path: Path
) -> None:
    https, smtp = closed_port(), closed_port()
    configure(app, peer_https_port=https, peer_smtp_port=smtp, retry_initial=1)
    await app.store.enqueue(SENDER, [BOB], encrypted(SENDER, [BOB]))
    worker.kick()

    async def tried() -> bool:
        return (await app.store.queue_list())[0].attempts >= 1

    await wait_until(tried)
    [entry] = await app.store.queue_list()
    assert entry.last_error.startswith("421 Failed to connect to any mail server; last attempt to")
    peer = MxdelivPeer(self_signed_context(tmp_path, PEER_IP))
    await peer.start(PEER_IP, nursery, port=https)
    await wait_until(lambda: queue_empty(app), timeout=15)
    assert len(peer.posts) == 1


async def test_queue_lifetime_over_bounces_with_the_last_error(
    app: App, worker: Outbound, tmp_path: Path
) -> None:
    await local_account(app)
    configure(app, peer_https_port=closed_port(), peer_smtp_port=closed_port(), queue_lifetime=0)
    await app.store.enqueue(SENDER, [BOB], encrypted(SENDER, [BOB]))
    worker.kick()
    await wait_until(lambda: queue_empty(app))
    [bounce] = await inbox(app, SENDER)
    assert b"421 Failed to connect to any mail server" in bounce
    assert b"Action: failed" in bounce


async def test_a_bounce_is_never_bounced(app: App, worker: Outbound) -> None:
    configure(app, peer_https_port=closed_port(), peer_smtp_port=closed_port(), queue_lifetime=0)
    await app.store.enqueue("", [BOB], encrypted("MAILER-DAEMON@[127.0.0.2]", [BOB]))
    worker.kick()
    await wait_until(lambda: queue_empty(app))
    assert await app.store.queue_list() == []


async def test_federation_policy_refuses_blocked_domains_without_connecting(
    app: App, worker: Outbound, nursery: trio.Nursery, tmp_path: Path
) -> None:
    await local_account(app)
    peer = MxdelivPeer(self_signed_context(tmp_path, PEER_IP))
    configure(
        app,
        peer_https_port=await peer.start(PEER_IP, nursery),
        peer_smtp_port=closed_port(),
        policy="ACCEPT",
        policy_domains=["[127.0.0.3]"],
    )
    await app.store.enqueue(SENDER, [BOB], encrypted(SENDER, [BOB]))
    worker.kick()
    await wait_until(lambda: queue_empty(app))
    assert not peer.posts
    [bounce] = await inbox(app, SENDER)
    assert b"550 5.7.1 Federation policy rejection" in bounce


async def test_allow_list_mode_lets_only_listed_domains_through(
    app: App, worker: Outbound, nursery: trio.Nursery, tmp_path: Path
) -> None:
    peer = MxdelivPeer(self_signed_context(tmp_path, PEER_IP))
    configure(
        app,
        peer_https_port=await peer.start(PEER_IP, nursery),
        peer_smtp_port=closed_port(),
        policy="REJECT",
        policy_domains=["127.0.0.3"],
    )
    await app.store.enqueue(SENDER, [BOB], encrypted(SENDER, [BOB]))
    worker.kick()
    await wait_until(lambda: queue_empty(app))
    assert len(peer.posts) == 1


async def test_domains_are_delivered_in_parallel(
    app: App, worker: Outbound, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A slow peer does not hold up another domain of the same message."""
    slow = MxdelivPeer(self_signed_context(tmp_path, PEER_IP), delay=3.0)
    fast = MxdelivPeer(self_signed_context(tmp_path, "127.0.0.4"))
    port = await slow.start(PEER_IP, nursery)
    await fast.start("127.0.0.4", nursery, port=port)
    configure(app, peer_https_port=port, peer_smtp_port=closed_port())
    dave = "dave12345@[127.0.0.4]"
    await app.store.enqueue(SENDER, [BOB, dave], encrypted(SENDER, [BOB, dave]))
    worker.kick()
    with trio.fail_after(2):
        while not fast.posts:
            await trio.sleep(0.02)
    assert fast.posts[0].values("x-mail-to") == [dave]
    await wait_until(lambda: queue_empty(app))


async def test_a_worker_stopped_mid_delivery_leaves_the_message_queued(
    app: App, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A crash while the peer is still reading loses nothing: the next worker sends again."""
    peer = MxdelivPeer(self_signed_context(tmp_path, PEER_IP), delay=30.0)
    configure(app, peer_https_port=await peer.start(PEER_IP, nursery), peer_smtp_port=closed_port())
    await app.store.enqueue(SENDER, [BOB], encrypted(SENDER, [BOB]))
    async with trio.open_nursery() as doomed:
        first = Outbound(app)
        await doomed.start(first.run)
        first.kick()
        with trio.fail_after(10):
            while not peer.posts:
                await trio.sleep(0.02)
        doomed.cancel_scope.cancel()
    [entry] = await app.store.queue_list()
    assert entry.recipients == [BOB]
    peer.delay = 0.0
    async with trio.open_nursery() as again:
        second = Outbound(app)
        await again.start(second.run)
        await wait_until(lambda: queue_empty(app))
        again.cancel_scope.cancel()
    assert len(peer.posts) == 2  # delivered at least once; the peer saw the first try too
