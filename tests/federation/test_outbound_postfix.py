"""Our outbound SMTP against Debian's Postfix, configured the ways the internet's MXes are.

The relay on 127.0.0.2 sends to postfix.test (Postfix on 127.0.0.5, found through dnsmasq); its
HTTPS port is closed there, so every message takes the SMTP fallback. Postfix answers with its
own replies: per-recipient refusals from an access table, temporary ones, multi-line ones
(`smtpd_reject_footer`), with or without PIPELINING and STARTTLS. Where pipelining is the
point, DNS names a forwarder in front of Postfix that counts the client's turns. The canned
peers of tests/federation/peers.py stay for faults Postfix will not produce on request.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes
from pathlib import Path

import trio

from tests.federation.conftest import wait_until
from tests.federation.dnsmasq import run_dnsmasq
from tests.federation.mail import encrypted
from tests.federation.pair import Relay, relay_config, shared_ports
from tests.federation.pki import ScratchCA
from tests.federation.postfix import Postfix, run_postfix

A_IP, POSTFIX_IP, PROXY_IP = "127.0.0.2", "127.0.0.5", "127.0.0.6"
DOMAIN = "postfix.test"
BOB, CAROL, DAVE = (f"{local}@{DOMAIN}" for local in ("bob", "carol", "dave"))
FOOTER = "See https://postfix.test/help for what this means"
# Checked at RCPT time: Carol does not exist, Dave's mailbox is busy for now.
ACCESS = f"{CAROL} 550 5.1.1 No such user here\n{DAVE} DEFER Mailbox busy, try later\n"
REFUSING = {
    "smtpd_recipient_restrictions": (
        "check_recipient_access texthash:{conf}/recipient_access, permit_mynetworks, "
        "reject_unauth_destination"
    ),
    # Every refusal in two lines: "550-5.1.1 ... \r\n550 5.1.1 See ..." (RFC 5321 4.2.1).
    "smtpd_reject_footer": "\\n" + FOOTER,
}


@dataclasses.dataclass
class World:
    relay: Relay
    postfix: Postfix
    sender: str
    port: int  # the SMTP port, the same on every address


class Turns:
    """A TCP forwarder between the relay and Postfix that records, per connection, which side
    sent each chunk as it arrived. It sees only TLS records, but it sees who waits for whom:
    a client that waits for each reply before its next command sends once per command."""

    def __init__(self) -> None:
        self.connections: list[list[str]] = []

    async def start(self, nursery: trio.Nursery, listen: str, target: str, port: int) -> None:
        listeners = await trio.open_tcp_listeners(port, host=listen)
        nursery.start_soon(trio.serve_listeners, self._connection, listeners)
        self.target, self.port = target, port

    async def _connection(self, client: trio.SocketStream) -> None:
        chunks: list[str] = []
        self.connections.append(chunks)
        server = await trio.open_tcp_stream(self.target, self.port)
        async with client, server, trio.open_nursery() as pair:
            pair.start_soon(self._forward, client, server, "client", chunks)
            pair.start_soon(self._forward, server, client, "server", chunks)

    @staticmethod
    async def _forward(
        source: trio.SocketStream, sink: trio.SocketStream, side: str, chunks: list[str]
    ) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some(65536):
                chunks.append(side)
                await sink.send_all(data)
            await sink.send_eof()

    def client_turns(self, connection: int = 0) -> int:
        """How often the client spoke while the server had spoken last (or not yet)."""
        chunks = self.connections[connection]
        return sum(
            side == "client" and (i == 0 or chunks[i - 1] == "server")
            for i, side in enumerate(chunks)
        )


@asynccontextmanager
async def postfix_world(
    tmp_path: Path, nursery: trio.Nursery, mx_ip: str = POSTFIX_IP, **postfix: dict[str, str]
) -> AsyncIterator[World]:
    """`mx_ip`: where DNS says the MX is (a Turns in front of Postfix listens there)."""
    ports = shared_ports([A_IP, POSTFIX_IP, PROXY_IP])
    ca = ScratchCA(tmp_path / "ca")
    cert, key = ca.issue([f"mx.{DOMAIN}"])
    with (
        run_dnsmasq(hosts={f"mx.{DOMAIN}": mx_ip}, mx={DOMAIN: f"mx.{DOMAIN}"}, txt={}) as resolver,
        run_postfix(
            domain=DOMAIN,
            address=POSTFIX_IP,
            port=ports["smtp"],
            relayhost=f"[{A_IP}]:{ports['smtp']}",
            cert=cert,
            key=key,
            **postfix,
        ) as server,
    ):
        config = relay_config(tmp_path / "a", A_IP, ports, resolver=resolver, ca_file=str(ca.path))
        relay = Relay(config)
        await relay.start(nursery)
        sender = relay.address("alice1234")
        await relay.account(sender)
        yield World(relay, server, sender, ports["smtp"])


async def delivered(postfix: Postfix, count: int) -> list[bytes]:
    with trio.fail_after(60):  # a backstop only
        while len(found := postfix.delivered()) < count:
            await trio.sleep(0.05)
    return found


def lf_body(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]


def delivered_to(message: bytes) -> str:
    return message_from_bytes(message)["Delivered-To"]


async def test_postfix_refuses_one_recipient_the_others_get_it_and_the_sender_a_bounce(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with postfix_world(
        tmp_path, nursery, extra=REFUSING, tables={"recipient_access": ACCESS}
    ) as world:
        relay = world.relay
        message = encrypted(world.sender, [BOB, CAROL], "one of two")
        await relay.submit(world.sender, [BOB, CAROL], message)
        [got] = await delivered(world.postfix, 1)
        assert delivered_to(got) == BOB
        [bounce] = await relay.wait_for_mail(world.sender, timeout=60)
        await wait_until(relay.queue_empty, timeout=60)
    status = message_from_bytes(bounce).get_payload(1).as_string()
    assert f"Final-Recipient: rfc822; {CAROL}" in status
    assert "Status: 5.1.1" in status
    # Every line of Postfix's multi-line reply reaches the sender, in order.
    diagnostic = " ".join(status.split("Diagnostic-Code: smtp; ", 1)[1].split())
    assert diagnostic.startswith(
        f"550 5.1.1 <{CAROL}>: Recipient address rejected: No such user here 5.1.1 "
    )
    assert diagnostic.endswith(f"5.1.1 {FOOTER}")
    assert BOB not in status


async def test_a_temporary_refusal_by_postfix_keeps_that_recipient_queued_without_a_bounce(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with postfix_world(
        tmp_path, nursery, extra=REFUSING, tables={"recipient_access": ACCESS}
    ) as world:
        relay = world.relay
        await relay.submit(world.sender, [BOB, DAVE], encrypted(world.sender, [BOB, DAVE], "x"))
        [got] = await delivered(world.postfix, 1)
        assert delivered_to(got) == BOB
        await wait_until(relay.tried, timeout=60)
        [entry] = await relay.queue()
        assert entry.recipients == [DAVE]
        assert entry.last_error.startswith(f"450 4.7.1 <{DAVE}>: Recipient address rejected:")
        assert "Mailbox busy, try later" in entry.last_error
        assert await relay.fetch_inbox(world.sender) == []  # no bounce for a temporary refusal


async def test_a_postfix_without_pipelining_gets_every_recipient(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    # Postfix hides PIPELINING and is told to refuse a client that sends commands ahead anyway.
    # (Measured: Postfix 3.7 does not see commands sent ahead inside TLS, so the client's turns
    # are counted by a forwarder in front of it as well.)
    strict = {
        "smtpd_discard_ehlo_keywords": "pipelining",
        "smtpd_forbid_unauth_pipelining": "yes",
        "smtpd_recipient_restrictions": (
            "reject_unauth_pipelining, permit_mynetworks, reject_unauth_destination"
        ),
        "smtpd_data_restrictions": "reject_unauth_pipelining",
    }
    recipients = [f"user{i}@{DOMAIN}" for i in range(8)]
    turns = Turns()
    async with postfix_world(tmp_path, nursery, mx_ip=PROXY_IP, extra=strict) as world:
        await turns.start(nursery, PROXY_IP, POSTFIX_IP, world.port)
        relay = world.relay
        message = encrypted(world.sender, recipients, "one command at a time")
        await relay.submit(world.sender, recipients, message)
        got = await delivered(world.postfix, len(recipients))
        await wait_until(relay.queue_empty, timeout=60)
        assert sorted(delivered_to(m) for m in got) == recipients
        assert "improper command pipelining" not in world.postfix.log()
        assert await relay.fetch_inbox(world.sender) == []
    # MAIL, each RCPT, DATA, the body and QUIT each waited for a reply, and EHLO before them:
    # at least 13 turns (measured 16), where a client that pipelines takes eight or nine.
    assert len(turns.connections) == 1
    assert turns.client_turns() >= len(recipients) + 5


async def test_with_pipelining_offered_several_recipients_go_in_one_transaction(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with postfix_world(tmp_path, nursery) as world:
        relay = world.relay
        recipients = [f"user{i}@{DOMAIN}" for i in range(5)]
        message = encrypted(world.sender, recipients, "many") + b".a line with a dot\r\n.\r\n"
        await relay.submit(world.sender, recipients, message)
        got = await delivered(world.postfix, 5)
        await wait_until(relay.queue_empty, timeout=60)
        assert sorted(delivered_to(m) for m in got) == recipients
        for copy in got:  # byte for byte (in Postfix's LF form), dot lines unstuffed again
            assert lf_body(copy) == lf_body(message)
        # One queue file in Postfix: one SMTP transaction carried all five.
        assert len({message_from_bytes(m)["Received"] for m in got}) == 1


async def test_a_postfix_without_starttls_gets_nothing_and_the_mail_waits(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with postfix_world(
        tmp_path, nursery, extra={"smtpd_tls_security_level": "none"}
    ) as world:
        relay = world.relay
        await relay.submit(world.sender, [BOB], encrypted(world.sender, [BOB], "secret"))
        await wait_until(relay.tried, timeout=60)
        [entry] = await relay.queue()
        assert "STARTTLS not offered" in entry.last_error
        assert world.postfix.delivered() == []
        assert await relay.fetch_inbox(world.sender) == []


async def test_with_pipelining_each_recipient_gets_its_own_reply_from_one_batch(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    # Sixteen recipients, Postfix refusing four (two in a row) with three-line replies and deferring
    # one, all answered to one batch of MAIL and RCPT commands: a reply paired with the wrong
    # recipient delivers, bounces or keeps the wrong ones.
    recipients = [f"user{i:02}@{DOMAIN}" for i in range(16)]
    refused = [recipients[i] for i in (1, 6, 7, 13)]
    deferred = recipients[9]
    accepted = [r for r in recipients if r not in refused and r != deferred]
    access = "".join(f"{r} 550 5.1.1 No such user here\n" for r in refused)
    access += f"{deferred} DEFER Mailbox busy, try later\n"
    turns = Turns()
    async with postfix_world(
        tmp_path, nursery, mx_ip=PROXY_IP, extra=REFUSING, tables={"recipient_access": access}
    ) as world:
        await turns.start(nursery, PROXY_IP, POSTFIX_IP, world.port)
        relay = world.relay
        await relay.submit(world.sender, recipients, encrypted(world.sender, recipients, "all"))
        got = await delivered(world.postfix, len(accepted))
        [bounce] = await relay.wait_for_mail(world.sender, timeout=60)
        await wait_until(relay.tried, timeout=60)
        [entry] = await relay.queue()
        log = world.postfix.log()
    assert sorted(delivered_to(m) for m in got) == accepted
    assert len({message_from_bytes(m)["Received"] for m in got}) == 1  # one transaction
    status = message_from_bytes(bounce).get_payload(1).as_string()
    blocks = [b for b in status.split("\n\n") if "Final-Recipient:" in b]
    bounced = {}
    for block in blocks:
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        bounced[fields["Final-Recipient"].removeprefix("rfc822; ")] = fields["Diagnostic-Code"]
    assert list(bounced) == refused
    for rcpt, diagnostic in bounced.items():  # each its own reply, all three lines of it
        assert diagnostic == (
            f"smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: No such user here"
            f" 5.1.1  5.1.1 {FOOTER}"  # the footer's leading \n makes an empty middle line
        )
    assert entry.recipients == [deferred]
    assert entry.last_error.startswith(f"450 4.7.1 <{deferred}>: Recipient address rejected:")
    assert "improper command pipelining" not in log
    # Postfix offered PIPELINING, so MAIL and the sixteen RCPTs went in one write, answered
    # together. The client's turns: EHLO, STARTTLS, two handshake flights, EHLO (measured: often
    # in the same turn as the second flight), the batch, DATA, the body, QUIT: eight or nine,
    # where one command per turn takes at least 25.
    assert turns.client_turns(0) <= 10  # the first attempt (the deferred one's retry follows)
