"""MX lookup and DKIM against a hand-made DNS responder (tests/federation/peers.py, dnspython
in the test's loop), which can also answer SERVFAIL on demand. The same against real software:
dnsmasq with Postfix (test_postfix.py, test_outbound_postfix.py) and OpenDKIM
(test_dkim_opendkim.py)."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio

from relay.config import Federation
from relay.log import Logger
from relay.outbound import dkim
from relay.policy.origin import NO_SIGNATURE, NO_VALID_SIGNATURE, keys, origin_check
from relay.policy.peers import REJECT_REPLY
from relay.resolver import RouteError, find_targets
from tests.federation.conftest import with_federation
from tests.federation.mail import encrypted
from tests.federation.peers import HandMadeDNS
from tests.helpers import make_config


@pytest.fixture
async def dns(nursery: trio.Nursery) -> HandMadeDNS:
    server = HandMadeDNS()
    await server.start("127.0.0.1", nursery)
    keys._keys.clear()  # each test publishes its own keys
    return server


def domain_config(tmp_path: Path, domain: str, dns: HandMadeDNS, **fed: object):
    config = dataclasses.replace(make_config(tmp_path / domain), mail_domain=domain)
    return with_federation(config, resolver=dns.address, **fed)


def publish(dns: HandMadeDNS, config) -> None:
    line = dkim.dkim_dns_record(config)
    name = line.split()[0].rstrip(".")
    chunks = re.search(r"\( (.*) \)", line).group(1)
    dns.records[(name, "TXT")] = [chunks]


async def test_mx_records_are_tried_by_preference(dns: HandMadeDNS) -> None:
    dns.records[("peer.test", "MX")] = ["20 backup.peer.test.", "10 mx.peer.test."]
    dns.records[("mx.peer.test", "A")] = ["127.0.0.3"]
    dns.records[("backup.peer.test", "A")] = ["127.0.0.4"]
    targets = await find_targets("peer.test", Federation(resolver=dns.address))
    assert [(t.host, t.addresses) for t in targets] == [
        ("mx.peer.test", ("127.0.0.3",)),
        ("backup.peer.test", ("127.0.0.4",)),
    ]


async def test_a_domain_without_mx_is_its_own_exchanger(dns: HandMadeDNS) -> None:
    dns.records[("plain.test", "A")] = ["127.0.0.5"]
    [target] = await find_targets("plain.test", Federation(resolver=dns.address))
    assert target.host == "plain.test" and target.addresses == ("127.0.0.5",)


@pytest.mark.parametrize(
    ("records", "failing", "reply", "permanent"),
    [
        (
            {("null.test", "MX"): ["0 ."]},
            set(),
            "556 5.1.10 Permanent failure: Recipient address has null MX",
            True,
        ),
        ({}, set(), "512 Domain null.test does not exist", True),
        ({}, {"null.test"}, "421 DNS resolution failed for null.test", False),
    ],
)
async def test_null_mx_nxdomain_and_dns_errors_answer_like_the_official_relay(
    dns: HandMadeDNS, records, failing, reply, permanent
) -> None:
    dns.records.update(records)
    dns.failing |= failing
    with pytest.raises(RouteError) as e:
        await find_targets("null.test", Federation(resolver=dns.address))
    assert (e.value.reply, e.value.permanent) == (reply, permanent)


async def test_domain_literals_need_no_dns() -> None:
    [target] = await find_targets("[127.0.0.3]", Federation(resolver="127.0.0.1:9"))
    assert target.addresses == ("127.0.0.3",) and target.literal


def test_the_key_is_made_once_private_and_not_in_lan_mode(tmp_path: Path) -> None:
    lan = make_config(tmp_path / "lan")
    dkim.ensure_key(lan)
    assert not dkim.key_path(lan).exists()
    config = dataclasses.replace(make_config(tmp_path / "d"), mail_domain="alpha.test")
    dkim.ensure_key(config)
    path = dkim.key_path(config)
    first = path.read_bytes()
    dkim.ensure_key(config)
    assert path.read_bytes() == first
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert path.name == "opendkim.private"


def test_the_dns_record_is_split_into_255_character_strings(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path / "d"), mail_domain="alpha.test")
    line = dkim.dkim_dns_record(config)
    assert line.startswith('opendkim._domainkey.alpha.test. 3600 IN TXT ( "v=DKIM1;k=rsa;p=')
    strings = re.findall(r'"([^"]*)"', line)
    assert len(strings) >= 2 and all(len(s) <= 255 for s in strings)
    assert "".join(strings).endswith(";s=email;t=s")
    assert dkim.dkim_dns_record(make_config(tmp_path / "lan")) == ""


def app_for(config) -> SimpleNamespace:
    return SimpleNamespace(config=config, log=Logger(level="warning"))


async def test_signed_mail_passes_the_origin_check(tmp_path: Path, dns: HandMadeDNS) -> None:
    alpha = domain_config(tmp_path, "alpha.test", dns)
    publish(dns, alpha)
    message = await dkim.sign(alpha, encrypted("anna12345@alpha.test", ["bob123456@beta.test"]))
    assert message.startswith(
        b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=alpha.test;"
    )
    beta = domain_config(tmp_path, "beta.test", dns)
    assert await origin_check(app_for(beta), message, "anna12345@alpha.test") is None


async def test_unsigned_forged_and_misaligned_mail_is_refused(
    tmp_path: Path, dns: HandMadeDNS
) -> None:
    alpha = domain_config(tmp_path, "alpha.test", dns)
    mallory = domain_config(tmp_path, "mallory.test", dns)
    publish(dns, alpha)
    publish(dns, mallory)
    beta = app_for(domain_config(tmp_path, "beta.test", dns))
    unsigned = encrypted("anna12345@alpha.test", ["bob123456@beta.test"])
    assert await origin_check(beta, unsigned, "anna12345@alpha.test") == NO_SIGNATURE
    signed = await dkim.sign(alpha, unsigned)
    forged = signed.replace(b"Subject: [...]", b"Subject: [!!!]")
    assert await origin_check(beta, forged, "anna12345@alpha.test") == NO_VALID_SIGNATURE
    # mallory.test signs a message claiming to be from alpha.test: valid, but not aligned
    from_mallory = encrypted("eve123456@mallory.test", ["bob123456@beta.test"])
    sig = (await dkim.sign(mallory, from_mallory)).split(b"\r\nFrom:", 1)[0] + b"\r\n"
    assert sig.startswith(b"DKIM-Signature:")
    misaligned = sig + unsigned
    assert await origin_check(beta, misaligned, "anna12345@alpha.test") == NO_VALID_SIGNATURE


async def test_a_rotated_key_is_fetched_again(tmp_path: Path, dns: HandMadeDNS) -> None:
    alpha = domain_config(tmp_path, "alpha.test", dns)
    publish(dns, alpha)
    beta = app_for(domain_config(tmp_path, "beta.test", dns))
    message = encrypted("anna12345@alpha.test", ["bob123456@beta.test"])
    assert await origin_check(beta, await dkim.sign(alpha, message), "") is None
    dkim.key_path(alpha).unlink()
    publish(dns, alpha)  # a new key under the same selector, the old one still cached
    assert await origin_check(beta, await dkim.sign(alpha, message), "") is None


async def test_domain_literal_senders_need_no_signature(tmp_path: Path, dns: HandMadeDNS) -> None:
    beta = app_for(domain_config(tmp_path, "beta.test", dns))
    message = encrypted("anna12345@[127.0.0.2]", ["bob123456@beta.test"])
    assert await origin_check(beta, message, "anna12345@[127.0.0.2]") is None


async def test_the_policy_refuses_blocked_senders(tmp_path: Path, dns: HandMadeDNS) -> None:
    blocked = ["[127.0.0.2]"]
    beta = app_for(domain_config(tmp_path, "beta.test", dns, policy_domains=blocked))
    message = encrypted("anna12345@[127.0.0.2]", ["bob123456@beta.test"])
    assert await origin_check(beta, message, "anna12345@[127.0.0.2]") == REJECT_REPLY
    allow = app_for(domain_config(tmp_path, "gamma.test", dns, policy="REJECT"))
    assert await origin_check(allow, message, "") == REJECT_REPLY
