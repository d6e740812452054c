"""DKIM checked by an implementation that is not ours: OpenDKIM (Debian's opendkim-tools).

Mail the relay signs must verify with OpenDKIM, as it will at the receiving MXes that run it;
mail OpenDKIM signs (a key made by opendkim-genkey, published through dnsmasq) must pass the
relay's origin check. A changed byte fails both ways, so neither side simply says yes.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import trio

from relay.outbound import dkim
from tests.federation import opendkim
from tests.federation.conftest import with_federation
from tests.federation.mail import encrypted
from tests.helpers import make_config

ANNA, BOB = "anna12345@alpha.test", "bob123456@beta.test"


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
