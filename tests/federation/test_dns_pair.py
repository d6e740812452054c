"""Two relays with DNS names (alpha.test, beta.test) found through dnsmasq: MX lookups,
verified TLS, DKIM signing and the DKIM origin check with the official relay's replies."""

from __future__ import annotations

import dataclasses
import http.client
import re
import smtplib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from relay.config import TLS, Config, Listen
from relay.outbound import dkim
from tests.federation.conftest import wait_until, with_federation
from tests.federation.dnsmasq import run_dnsmasq
from tests.federation.mail import encrypted
from tests.federation.pair import Relay, shared_ports
from tests.federation.pki import ScratchCA

A_IP, B_IP = "127.0.0.2", "127.0.0.3"
ALPHA, BETA, MALLORY = "alpha.test", "beta.test", "mallory.test"


def domain_config(tmp: Path, domain: str, ip: str, ports: dict[str, int], ca: ScratchCA) -> Config:
    cert, key = ca.issue([f"mx.{domain}", domain])
    config = Config(
        mail_domain=domain,
        data_dir=tmp / domain,
        listen=Listen(address=[ip], **ports),
        tls=TLS(mode="files", cert=str(cert), key=str(key)),
    )
    return with_federation(
        config,
        peer_smtp_port=ports["smtp"],
        peer_https_port=ports["https"],
        retry_initial=1,
        ca_file=str(ca.path),
    )


def dkim_strings(config: Config) -> list[str]:
    dkim.ensure_key(config)
    return re.findall(r'"([^"]*)"', dkim.dkim_dns_record(config))


@dataclasses.dataclass
class Net:
    alpha: Config
    beta: Config
    mallory: Config
    resolver: str
    ca: ScratchCA
    ports: dict[str, int]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    ports = shared_ports([A_IP, B_IP])
    ca = ScratchCA(tmp_path / "ca")
    alpha = domain_config(tmp_path, ALPHA, A_IP, ports, ca)
    beta = domain_config(tmp_path, BETA, B_IP, ports, ca)
    mallory = domain_config(tmp_path, MALLORY, "127.0.0.4", ports, ca)
    with run_dnsmasq(
        hosts={f"mx.{ALPHA}": A_IP, f"mx.{BETA}": B_IP, f"mx.{MALLORY}": "127.0.0.4"},
        mx={ALPHA: f"mx.{ALPHA}", BETA: f"mx.{BETA}", MALLORY: f"mx.{MALLORY}"},
        txt={
            f"opendkim._domainkey.{c.mail_domain}": dkim_strings(c) for c in (alpha, beta, mallory)
        },
    ) as resolver:
        fed = {"resolver": resolver}
        yield Net(
            with_federation(alpha, **fed),
            with_federation(beta, **fed),
            with_federation(mallory, **fed),
            resolver,
            ca,
            ports,
        )


@pytest.fixture
async def pair(net: Net, nursery: trio.Nursery) -> AsyncIterator[tuple[Relay, Relay]]:
    a = Relay(net.alpha, ca_file=str(net.ca.path))
    b = Relay(net.beta, ca_file=str(net.ca.path))
    await a.start(nursery)
    await b.start(nursery)
    yield a, b


async def send(a: Relay, b: Relay, text: str) -> tuple[bytes, bytes]:
    alice, bob = a.address("alice1234"), b.address("bob123456")
    await a.account(alice)
    await b.account(bob)
    message = encrypted(alice, [bob], text)
    await a.submit(alice, [bob], message)
    [got] = await b.wait_for_mail(bob)
    return message, got


async def test_signed_mail_flows_both_ways_over_verified_https(pair) -> None:
    a, b = pair
    for sender, receiver in ((a, b), (b, a)):
        sent, got = await send(sender, receiver, "hello over DNS")
        assert got.split(b"\r\n\r\n", 1)[1] == sent.split(b"\r\n\r\n", 1)[1]
        assert b"DKIM-Signature" not in got
        [line] = sender.log_lines("federation-delivered")
        assert "via=https" in line and f"host=mx.{receiver.config.mail_domain}" in line


async def test_smtp_fallback_with_verified_starttls(net: Net, nursery: trio.Nursery) -> None:
    a = Relay(net.alpha, ca_file=str(net.ca.path))
    beta = dataclasses.replace(net.beta, listen=dataclasses.replace(net.beta.listen, https=0))
    b = Relay(beta, ca_file=str(net.ca.path))
    await a.start(nursery)
    await b.start(nursery)
    await send(a, b, "hello over SMTP")
    [line] = a.log_lines("federation-delivered")
    assert "via=smtp" in line


async def test_a_peer_whose_certificate_does_not_verify_gets_nothing(
    net: Net, nursery: trio.Nursery, tmp_path: Path
) -> None:
    a = Relay(net.alpha, ca_file=str(net.ca.path))
    b = Relay(dataclasses.replace(net.beta, tls=TLS(), data_dir=tmp_path / "selfsigned"))
    await a.start(nursery)
    await b.start(nursery)
    alice, bob = a.address("alice1234"), b.address("bob123456")
    await a.account(alice)
    await b.account(bob)
    await a.submit(alice, [bob], encrypted(alice, [bob]))
    await wait_until(a.tried)
    [entry] = await a.queue()
    assert "certificate verify failed" in entry.last_error
    assert await b.fetch_inbox(bob) == []


def mxdeliv_post(b: Relay, sender: str, rcpt: str, message: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection(
        B_IP, b.config.listen.https, context=b.client_context(), timeout=10
    )
    conn.request("POST", "/mxdeliv", message, {"X-Mail-From": sender, "X-Mail-To": rcpt})
    response = conn.getresponse()
    return response.status, response.read()


def smtp_send(b: Relay, sender: str, rcpt: str, message: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP(B_IP, b.config.listen.smtp, timeout=10) as s:
        s.starttls(context=b.client_context())
        try:
            s.sendmail(sender, [rcpt], message)
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error
    return 250, b""


async def forged_messages(net: Net, bob: str) -> dict[str, tuple[bytes, bytes]]:
    """Each kind of bad origin, with the reply the official relay gives."""
    anna = f"anna12345@{ALPHA}"
    message = encrypted(anna, [bob])
    signed = await dkim.sign(net.alpha, message)
    eve = encrypted(f"eve123456@{MALLORY}", [bob])
    mallory_sig = (await dkim.sign(net.mallory, eve)).split(b"\r\nFrom:", 1)[0] + b"\r\n"
    return {
        "unsigned": (message, b"554 5.7.1 No DKIM signature found"),
        "tampered": (
            signed.replace(b"OpenPGP encrypted message", b"OpenPGP encrypted messagE"),
            b"554 5.7.1 No valid DKIM signature found",
        ),
        "misaligned": (mallory_sig + message, b"554 5.7.1 No valid DKIM signature found"),
        "good": (signed, b"250 OK"),
    }


async def test_mxdeliv_refuses_unsigned_forged_and_misaligned_mail(net: Net, pair) -> None:
    _, b = pair
    bob = b.address("bob123456")
    await b.account(bob)
    anna = f"anna12345@{ALPHA}"
    for kind, (message, reply) in (await forged_messages(net, bob)).items():
        status, body = await trio.to_thread.run_sync(mxdeliv_post, b, anna, bob, message)
        assert (status, body) == (200 if kind == "good" else 400, reply), kind
    [stored] = await b.fetch_inbox(bob)
    assert b"DKIM-Signature" not in stored


async def test_smtp_mx_refuses_unsigned_forged_and_misaligned_mail(net: Net, pair) -> None:
    _, b = pair
    bob = b.address("bob123456")
    await b.account(bob)
    anna = f"anna12345@{ALPHA}"
    for kind, (message, reply) in (await forged_messages(net, bob)).items():
        code, text = await trio.to_thread.run_sync(smtp_send, b, anna, bob, message)
        if kind == "good":
            assert code == 250
        else:
            assert f"{code} {text.decode()}" == reply.decode(), kind
    [stored] = await b.fetch_inbox(bob)
    assert b"DKIM-Signature" not in stored
