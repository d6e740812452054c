"""Interop with Debian's Postfix as a foreign mail server on 127.0.0.5 (postfix.test)."""

from __future__ import annotations

import dataclasses
import re
import smtplib
import ssl
from pathlib import Path

import pytest
import trio

from relay.config import Config
from relay.outbound import dkim
from tests.federation.dnsmasq import run_dnsmasq
from tests.federation.mail import encrypted
from tests.federation.pair import Relay, relay_config, shared_ports
from tests.federation.pki import ScratchCA
from tests.federation.postfix import Postfix, run_postfix
from tests.helpers import make_config

A_IP, POSTFIX_IP = "127.0.0.2", "127.0.0.5"
DOMAIN = "postfix.test"


@dataclasses.dataclass
class World:
    relay: Relay
    postfix: Postfix
    signer: Config  # holds postfix.test's DKIM key, published in DNS
    ca: ScratchCA


@pytest.fixture
async def world(tmp_path: Path, nursery: trio.Nursery):
    ports = shared_ports([A_IP, POSTFIX_IP])
    ca = ScratchCA(tmp_path / "ca")
    cert, key = ca.issue([f"mx.{DOMAIN}"])
    signer = dataclasses.replace(make_config(tmp_path / "signer"), mail_domain=DOMAIN)
    dkim.ensure_key(signer)
    strings = re.findall(r'"([^"]*)"', dkim.dkim_dns_record(signer))
    with (
        run_dnsmasq(
            hosts={f"mx.{DOMAIN}": POSTFIX_IP},
            mx={DOMAIN: f"mx.{DOMAIN}"},
            txt={f"opendkim._domainkey.{DOMAIN}": strings},
        ) as resolver,
        run_postfix(
            domain=DOMAIN,
            address=POSTFIX_IP,
            port=ports["smtp"],
            relayhost=f"[{A_IP}]:{ports['smtp']}",
            cert=cert,
            key=key,
        ) as postfix,
    ):
        config = relay_config(tmp_path / "a", A_IP, ports, resolver=resolver, ca_file=str(ca.path))
        relay = Relay(config)
        await relay.start(nursery)
        yield World(relay, postfix, signer, ca)


def lf_body(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]


async def test_we_deliver_to_postfix_over_smtp_with_verified_starttls(world: World) -> None:
    relay = world.relay
    alice, bob = relay.address("alice1234"), f"bob@{DOMAIN}"
    await relay.account(alice)
    message = encrypted(alice, [bob], "hello postfix")
    await relay.submit(alice, [bob], message)
    with trio.fail_after(20):
        while not (delivered := world.postfix.delivered()):
            await trio.sleep(0.1)
    [got] = delivered
    assert lf_body(got) == lf_body(message)
    assert b"with ESMTPS" in got  # Postfix notes the TLS session in its Received line
    [line] = relay.log_lines("federation-delivered")
    assert "via=smtp" in line and f"host=mx.{DOMAIN}" in line
    assert await relay.queue_empty()


def submit_to_postfix(world: World, sender: str, rcpt: str, message: bytes) -> None:
    ctx = ssl.create_default_context(cafile=str(world.ca.path))
    ctx.check_hostname = False
    with smtplib.SMTP(POSTFIX_IP, world.postfix.port, timeout=10) as s:
        s.starttls(context=ctx)
        s.sendmail(sender, [rcpt], message)


async def test_postfix_delivers_dkim_signed_pgp_mail_to_us(world: World) -> None:
    relay = world.relay
    alice, anna = relay.address("alice1234"), f"anna@{DOMAIN}"
    await relay.account(alice)
    message = await dkim.sign(world.signer, encrypted(anna, [alice], "hello from postfix"))
    await trio.to_thread.run_sync(submit_to_postfix, world, anna, alice, message)
    [got] = await relay.wait_for_mail(alice, timeout=30)
    assert lf_body(got) == lf_body(message)
    assert b"DKIM-Signature" not in got


async def test_unsigned_mail_through_postfix_is_refused_and_bounced_by_postfix(
    world: World,
) -> None:
    relay = world.relay
    alice, anna = relay.address("alice1234"), f"anna@{DOMAIN}"
    await relay.account(alice)
    await trio.to_thread.run_sync(
        submit_to_postfix, world, anna, alice, encrypted(anna, [alice], "unsigned")
    )
    with trio.fail_after(30):
        while "No DKIM signature found" not in world.postfix.log():
            await trio.sleep(0.2)
    assert await relay.fetch_inbox(alice) == []
