"""Three relay nodes on one PostgreSQL behind HAProxy, as an operator who outgrew a box runs
them (docs/scale-out.md): what their users notice.

- mail submitted on one node wakes an IDLE client on another at once;
- a Delta Chat pair on different nodes chats (SecureJoin, messages both ways);
- a node killed with SIGKILL under load loses no acknowledged message, and clients go on
  through the balancer;
- an outbound queue every node sees is delivered to the peer exactly once.
"""

from __future__ import annotations

import imaplib
import json
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from pathlib import Path

import pytest
import trio

from tests.e2e.dclient import DCClient, Profile, rpc_server_path
from tests.federation.conftest import wait_until
from tests.federation.mail import encrypted
from tests.federation.pair import ChildRelay, relay_config
from tests.scaleout.cluster import BALANCER, Cluster

NODES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
PEER = "127.0.0.5"


@pytest.fixture
async def cluster(tmp_path: Path, pg_dsn: str) -> AsyncIterator[Cluster]:
    cluster = Cluster.create(tmp_path, pg_dsn, NODES, retry_max=2)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
        print(cluster.logs())  # shown when the test fails


def tls_client(cluster: Cluster) -> ssl.SSLContext:
    return cluster.front.client_context()


def quoted(text: str) -> str:
    """An IMAP quoted string (a password /new hands out may hold a backslash or a quote)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class IdleClient:
    """A raw IMAPS connection in IDLE, reading untagged responses as they come."""

    def __init__(self, port: int, addr: str, password: str, ctx: ssl.SSLContext) -> None:
        raw = socket.create_connection((BALANCER, port), timeout=20)
        self.sock = ctx.wrap_socket(raw, server_hostname=None)
        self.buffer = b""
        self.line()  # greeting
        self.command(f"a1 LOGIN {quoted(addr)} {quoted(password)}", b"a1 OK")
        self.command("a2 SELECT INBOX", b"a2 OK")
        self.command("a3 IDLE", b"+ ")

    def command(self, text: str, until: bytes) -> None:
        self.sock.sendall(text.encode() + b"\r\n")
        while not (line := self.line()).startswith(until):
            assert not line.startswith(text.split()[0].encode() + b" "), line

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def wait_exists(self, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        while not (line := self.line()).endswith(b" EXISTS"):
            pass
        return line

    def close(self) -> None:
        self.sock.close()


def tagged(message: bytes, tag: str) -> bytes:
    """The message with a Message-ID naming `tag` (the relay keeps it as it is)."""
    return re.sub(rb"Message-ID: <[^>]*>", f"Message-ID: <{tag}@test>".encode(), message, count=1)


def tag_of(raw: bytes) -> str:
    return message_from_bytes(raw)["Message-ID"].strip("<>").removesuffix("@test")


def submit(port: int, sender: str, password: str, ctx: ssl.SSLContext, message: bytes, to: str):
    with smtplib.SMTP_SSL(BALANCER, port, context=ctx, timeout=20) as smtp:
        smtp.login(sender, password)
        smtp.sendmail(sender, [to], message)


async def test_mail_submitted_on_one_node_wakes_an_idle_client_on_another(cluster: Cluster):
    alice, bob = cluster.new_account(), cluster.new_account()
    ctx = tls_client(cluster)
    imap_on_a = cluster.pinned[(NODES[0], "imaps")]
    smtp_on_b = cluster.pinned[(NODES[1], "submissions")]

    def exchange() -> bytes:
        idle = IdleClient(imap_on_a, alice["email"], alice["password"], ctx)
        try:
            message = encrypted(bob["email"], [alice["email"]])
            submit(smtp_on_b, bob["email"], bob["password"], ctx, message, alice["email"])
            return idle.wait_exists(timeout=10)
        finally:
            idle.close()

    assert await trio.to_thread.run_sync(exchange) == b"* 1 EXISTS"


@pytest.fixture
def dc(tmp_path: Path) -> Iterator[DCClient]:
    server = rpc_server_path()
    assert server, "deltachat-rpc-server is installed with the test extra"
    client = DCClient(tmp_path / "accounts", server, tmp_path / "rpc-server.log")
    try:
        client.start()
        yield client
    finally:
        client.close()


def add_profile(dc: DCClient, name: str, answer: dict) -> Profile:
    """A profile from a /new answer, set up as the user does it (the dclogin link)."""
    account = dc.call(dc.dc.add_account)
    profile = Profile(name, account, answer["email"], answer["password"], dc)
    dc.call(account.set_config, "displayname", name)
    dc.call(account.add_transport_from_qr, answer["dclogin_url"], timeout=60)
    profile.go_online(60)
    return profile


@pytest.mark.timeout(300)
async def test_a_delta_chat_pair_on_two_nodes_chats(cluster: Cluster, dc: DCClient):
    def chat() -> None:
        alice = add_profile(dc, "alice", cluster.pinned_account(NODES[0]))
        bob = add_profile(dc, "bob", cluster.pinned_account(NODES[1]))
        bob.securejoin(alice)
        bob.call(bob.chat_with(alice).send_text, "hello from node 2")
        got = alice.wait_incoming(lambda m: m.text == "hello from node 2")
        assert alice.call(got.sender.get_snapshot).address == bob.addr
        alice.call(alice.chat_with(bob).send_text, "and back from node 1")
        got = bob.wait_incoming(lambda m: m.text == "and back from node 1")
        assert bob.call(got.sender.get_snapshot).address == alice.addr

    await trio.to_thread.run_sync(chat)


async def test_a_node_killed_under_load_loses_no_acknowledged_message(cluster: Cluster):
    """Senders submit through the balancer without pause; one node is SIGKILLed halfway. Every
    message that got its 250 is in the recipient's INBOX afterwards, fetched through the
    balancer from the nodes left."""
    recipient = cluster.new_account()
    await trio.to_thread.run_sync(fetch_inbox, cluster, recipient, 0)  # the first login creates it
    senders = [cluster.new_account() for _ in range(4)]
    ctx = tls_client(cluster)
    port = cluster.ports["submissions"]
    acknowledged: list[str] = []
    refused: list[str] = []
    stop = threading.Event()

    def send_loop(sender: dict) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            tag = f"{sender['email']}-{n}"
            message = tagged(encrypted(sender["email"], [recipient["email"]]), tag)
            try:
                submit(port, sender["email"], sender["password"], ctx, message, recipient["email"])
            except (OSError, smtplib.SMTPException) as e:
                refused.append(f"{tag}: {e!r}")  # not acknowledged: the client retries it
                time.sleep(0.1)  # as a client backs off (a rate limit's 450, a node gone)
                continue
            acknowledged.append(tag)

    async with trio.open_nursery() as nursery:
        for sender in senders:
            nursery.start_soon(trio.to_thread.run_sync, send_loop, sender)
        try:
            await wait_until(lambda: _at_least(acknowledged, 40), timeout=60)
            await cluster.node(NODES[1]).crash()
            killed_at = len(acknowledged)
            await wait_until(lambda: _at_least(acknowledged, killed_at + 40), timeout=60)
        finally:
            stop.set()  # the senders end with their current message
            print(
                f"{len(acknowledged)} acknowledged, {len(refused)} refused:",
                refused[:3],
                refused[-2:],
            )

    inbox = await trio.to_thread.run_sync(
        lambda: fetch_inbox(cluster, recipient, count=len(acknowledged))
    )
    assert set(acknowledged) <= {tag_of(raw) for raw in inbox}
    assert len(acknowledged) > killed_at  # the balancer kept sending to the nodes left


async def _at_least(items: list, count: int) -> bool:
    return len(items) >= count


def fetch_inbox(cluster: Cluster, account: dict, count: int, timeout: float = 60) -> list[bytes]:
    """INBOX through the balancer once it holds at least `count` messages."""
    deadline = time.monotonic() + timeout
    port, ctx = cluster.ports["imaps"], tls_client(cluster)
    with imaplib.IMAP4_SSL(BALANCER, port, ssl_context=ctx, timeout=20) as imap:
        imap.login(account["email"], account["password"])
        imap.select("INBOX")
        while len(uids := imap.uid("SEARCH", "ALL")[1][0].split()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(uids)} of {count} messages")
            time.sleep(0.1)
        return [imap.uid("FETCH", uid, "(BODY.PEEK[])")[1][0][1] for uid in uids]


async def test_a_queue_every_node_sees_is_delivered_exactly_once(cluster: Cluster, tmp_path: Path):
    """500 messages to a peer that is down: every node's outbound worker sees the whole queue
    come due at once, again and again. When the peer is back, it gets each message once."""
    peer = ChildRelay(
        relay_config(tmp_path / "peer", PEER, cluster.ports, retry_initial=1, retry_max=2)
    )
    await peer.start()
    recipient = f"peeruser1@[{PEER}]"
    await peer.fetch_inbox(recipient)  # the first login creates the account
    await peer.stop()

    sender = cluster.new_account()
    ctx = tls_client(cluster)
    count = 500

    def fill() -> None:
        with smtplib.SMTP_SSL(
            BALANCER, cluster.ports["submissions"], context=ctx, timeout=20
        ) as smtp:
            smtp.login(sender["email"], sender["password"])
            for n in range(count):
                message = tagged(encrypted(sender["email"], [recipient]), f"m{n}")
                smtp.sendmail(sender["email"], [recipient], message)

    await trio.to_thread.run_sync(fill)
    # Every entry tried and planned again at least twice: the nodes' workers race for them.
    await wait_until(lambda: _all_tried(cluster.nodes[0], count, 2), timeout=60, step=0.5)
    await peer.start()
    try:
        await peer.wait_for_mail(recipient, count=count, timeout=120)
        await wait_until(lambda: _queue_empty(cluster.nodes[0]), timeout=60, step=0.5)
        inbox = await peer.fetch_inbox(recipient)
    finally:
        await peer.stop()
    assert sorted(tag_of(raw) for raw in inbox) == sorted(f"m{n}" for n in range(count))


async def _queue(node: ChildRelay) -> list[dict]:
    listed = await node.command("queue", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


async def _all_tried(node: ChildRelay, count: int, attempts: int) -> bool:
    entries = await _queue(node)
    return len(entries) == count and all(e["attempts"] >= attempts for e in entries)


async def _queue_empty(node: ChildRelay) -> bool:
    return not await _queue(node)
