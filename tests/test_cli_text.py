"""`relay dns` and `relay invite` text."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import dns.rdatatype
import dns.zone

from relay.cli_text import invite_text
from relay.config import TLS, Accounts, Config, Listen
from relay.core.zone import dns_records
from relay.tls import acme_account_uri
from tests.helpers import read_terminal_qr
from tests.web.test_new import parse_dclogin

DOMAIN = "chat.example.org"


def acme_config(tmp_path: Path) -> Config:
    listen = Listen(address=["203.0.113.7", "2001:db8:1::7"])  # documentation ranges
    return Config(mail_domain=DOMAIN, data_dir=tmp_path, listen=listen, tls=TLS(mode="acme"))


def records(text: str) -> dict[tuple[str, str], list[str]]:
    """Parse the output as a zone file: (name, type) -> values."""
    zone = dns.zone.from_text(text, origin=DOMAIN, relativize=False, check_origin=False)
    found: dict[tuple[str, str], list[str]] = {}
    for name, rdataset in zone.iterate_rdatasets():
        key = (name.to_text(), dns.rdatatype.to_text(rdataset.rdtype))
        found[key] = sorted(rdata.to_text() for rdata in rdataset)
    return found


def test_dns_records_for_an_acme_relay(tmp_path):
    config = acme_config(tmp_path)
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "account.json").write_text(json.dumps({"uri": "https://ca/acct/1"}))
    found = records(dns_records(config))
    d = f"{DOMAIN}."
    # The documentation ranges are not global, so they are listed as comments to replace.
    assert (d, "A") not in found
    assert found[(d, "MX")] == [f"10 {d}"]
    assert found[(d, "TXT")] == ['"v=spf1 a ~all"']
    assert found[(f"_dmarc.{d}", "TXT")] == ['"v=DMARC1;p=reject;adkim=s;aspf=s"']
    assert found[(f"mta-sts.{d}", "CNAME")] == [d]
    (sts,) = found[(f"_mta-sts.{d}", "TXT")]
    assert sts.startswith('"v=STSv1; id=')
    assert found[(f"_submissions._tcp.{d}", "SRV")] == [f"0 1 465 {d}"]
    assert found[(f"_submission._tcp.{d}", "SRV")] == [f"0 1 587 {d}"]
    assert found[(f"_imaps._tcp.{d}", "SRV")] == [f"0 1 993 {d}"]
    assert found[(f"_imap._tcp.{d}", "SRV")] == [f"0 1 143 {d}"]
    assert found[(d, "CAA")] == ['0 issue "letsencrypt.org;accounturi=https://ca/acct/1"']
    assert acme_account_uri(config) == "https://ca/acct/1"


def test_dns_records_list_public_addresses(tmp_path):
    listen = Listen(address=["8.8.4.4", "2606:4700::1"])
    config = dataclasses.replace(acme_config(tmp_path), listen=listen)
    found = records(dns_records(config))
    assert found[(f"{DOMAIN}.", "A")] == ["8.8.4.4"]
    assert found[(f"{DOMAIN}.", "AAAA")] == ["2606:4700::1"]


def test_the_mta_sts_id_changes_only_with_the_policy(tmp_path):
    config = acme_config(tmp_path)
    key = (f"_mta-sts.{DOMAIN}.", "TXT")
    assert records(dns_records(config))[key] == records(dns_records(config))[key]
    other = dataclasses.replace(config, mail_domain="other.example.org")
    other_records = dns.zone.from_text(
        dns_records(other), origin="other.example.org", relativize=False, check_origin=False
    )
    other_id = other_records.find_rdataset("_mta-sts.other.example.org.", "TXT")[0].to_text()
    assert other_id != records(dns_records(config))[key][0]


def test_self_signed_domain_has_no_mta_sts_or_caa(tmp_path):
    config = dataclasses.replace(acme_config(tmp_path), tls=TLS(mode="self-signed"))
    found = records(dns_records(config))
    assert (f"_mta-sts.{DOMAIN}.", "TXT") not in found
    assert (f"{DOMAIN}.", "CAA") not in found
    assert (f"{DOMAIN}.", "MX") in found


def test_lan_mode_needs_no_dns(tmp_path):
    text = dns_records(Config.embedded_default(tmp_path))
    assert text.startswith(";") and "no DNS records" in text


def test_invite_text_in_domain_mode(tmp_path):
    text = invite_text(acme_config(tmp_path))
    assert text.rstrip().endswith(f"DCACCOUNT:https://{DOMAIN}/new")
    assert read_terminal_qr(text, tmp_path) == [f"DCACCOUNT:https://{DOMAIN}/new"]


def test_invite_text_in_lan_mode_is_a_fresh_login(tmp_path):
    config = Config.embedded_default(tmp_path)
    texts = [invite_text(config) for _ in range(2)]
    links = [text.rstrip().splitlines()[-1] for text in texts]
    assert links[0] != links[1]
    assert links[0].startswith("dclogin:")
    assert read_terminal_qr(texts[0], tmp_path) == [links[0]]  # the QR is this login
    addr, params = parse_dclogin(links[0])
    assert addr.endswith("@[127.0.0.1]") and params["ic"] == "3"


def test_invite_text_on_an_ipv6_lan_relay_logs_in_at_the_ipv6_literal(tmp_path):
    config = Config.embedded_default(tmp_path, address="fd00::2")
    text = invite_text(config)
    link = text.rstrip().splitlines()[-1]
    assert read_terminal_qr(text, tmp_path) == [link]
    addr, params = parse_dclogin(link)
    assert addr.endswith("@[IPv6:fd00::2]")
    assert params["ih"] == params["sh"] == "fd00::2"


def test_invite_text_when_registration_is_closed(tmp_path):
    config = dataclasses.replace(
        Config.embedded_default(tmp_path), accounts=Accounts(registration_open=False)
    )
    assert "closed" in invite_text(config)
