"""DKIM checked by an implementation that is not ours: OpenDKIM (Debian's opendkim-tools).

Mail the relay signs must verify with OpenDKIM, as it will at the receiving MXes that run it
(a changed byte must not); mail that Postfix signs through the OpenDKIM milter (a key made by
opendkim-genkey, published through dnsmasq) must pass the relay's origin check and arrive.
"""

from __future__ import annotations

import dataclasses
import re
import smtplib
from pathlib import Path

import trio

from relay.outbound import dkim
from relay.policy.origin import keys
from tests.federation import opendkim
from tests.federation.conftest import with_federation
from tests.federation.dnsmasq import run_dnsmasq
from tests.federation.mail import encrypted
from tests.federation.pair import Relay, relay_config, shared_ports
from tests.federation.pki import ScratchCA
from tests.federation.postfix import run_postfix
from tests.helpers import make_config

ANNA, BOB = "anna12345@alpha.test", "bob123456@beta.test"
A_IP, POSTFIX_IP, POSTFIX_DOMAIN = "127.0.0.2", "127.0.0.5", "postfix.test"


def lf_body(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]


def domain_config(tmp_path: Path, domain: str, **fed: object):
    config = dataclasses.replace(make_config(tmp_path / domain), mail_domain=domain)
    return with_federation(config, **fed)


async def test_opendkim_verifies_what_the_relay_signs(tmp_path: Path) -> None:
    alpha = domain_config(tmp_path, "alpha.test")
    dkim.ensure_key(alpha)
    record = {
        "opendkim._domainkey.alpha.test": re.findall(r'"([^"]*)"', dkim.dkim_dns_record(alpha))
    }
    signed = await dkim.sign(alpha, encrypted(ANNA, [BOB], "signed by the relay"))
    verdict = await trio.to_thread.run_sync(opendkim.verify, signed, record)
    assert verdict.returncode == 0, verdict.stderr
    forged = signed.replace(b"Subject: [...]", b"Subject: [!!!]")
    assert forged != signed
    verdict = await trio.to_thread.run_sync(opendkim.verify, forged, record)
    assert verdict.returncode != 0 and "Bad signature" in verdict.stderr, verdict.stderr


async def test_mail_signed_by_the_opendkim_milter_in_postfix_reaches_the_inbox(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """postfix.test signs with OpenDKIM as deployed (milter, rsa-sha256, a key made by
    opendkim-genkey); our origin check accepts it and the mail reaches the inbox."""
    ports = shared_ports([A_IP, POSTFIX_IP])
    ca = ScratchCA(tmp_path / "ca")
    cert, tls_key = ca.issue([f"mx.{POSTFIX_DOMAIN}"])
    (tmp_path / "dkim").mkdir()
    key, record = opendkim.new_key(tmp_path / "dkim", domain=POSTFIX_DOMAIN, selector="mail2026")
    with (
        run_dnsmasq(
            hosts={f"mx.{POSTFIX_DOMAIN}": POSTFIX_IP},
            mx={POSTFIX_DOMAIN: f"mx.{POSTFIX_DOMAIN}"},
            txt={f"mail2026._domainkey.{POSTFIX_DOMAIN}": record},
        ) as resolver,
        opendkim.run_milter(
            domain=POSTFIX_DOMAIN, selector="mail2026", key=key, workdir=tmp_path / "dkim"
        ) as milter,
        run_postfix(
            domain=POSTFIX_DOMAIN,
            address=POSTFIX_IP,
            port=ports["smtp"],
            relayhost=f"[{A_IP}]:{ports['smtp']}",
            cert=cert,
            key=tls_key,
            extra={"smtpd_milters": milter, "milter_default_action": "tempfail"},
        ) as postfix,
    ):
        keys._keys.clear()
        config = relay_config(tmp_path / "a", A_IP, ports, resolver=resolver, ca_file=str(ca.path))
        relay = Relay(config)
        await relay.start(nursery)
        alice, anna = relay.address("alice1234"), f"anna@{POSTFIX_DOMAIN}"
        await relay.account(alice)
        message = encrypted(anna, [alice], "signed by the OpenDKIM milter")

        def submit() -> None:
            with smtplib.SMTP(POSTFIX_IP, postfix.port, timeout=30) as smtp:
                smtp.sendmail(anna, [alice], message)

        await trio.to_thread.run_sync(submit)
        # Unsigned, postfix.test's mail is refused (test_postfix.py): accepted means verified.
        [got] = await relay.wait_for_mail(alice, timeout=60)
        assert lf_body(got) == lf_body(message)
        assert not relay.log_lines("dkim-refused")
