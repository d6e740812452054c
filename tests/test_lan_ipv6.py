"""LAN mode on an IPv6 address: with `mail_domain = "::1"` the relay's addresses are
user@[IPv6:::1] (the RFC 5321 address literal), handed out by /new and its dclogin link, created
at the first IMAP login and used in SMTP as in the From header, in any letter case."""

from __future__ import annotations

import imaplib
import json
import smtplib
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from relay.config import Config
from tests.helpers import RelayServer, make_config
from tests.smtp.session_helpers import PASSWORD, encrypted, in_thread

DOMAIN = "[IPv6:::1]"


@pytest.fixture
def relay_config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data", "::1")


def imap_inbox_count(server: RelayServer, user: str, password: str = PASSWORD) -> int:
    with imaplib.IMAP4_SSL(
        "::1", server.port("imaps"), ssl_context=server.ssl_client_context(), timeout=10
    ) as client:
        client.login(user, password)
        typ, data = client.select("INBOX")
        assert typ == "OK"
        client.logout()
        return int(data[0] or 0)


def submit(server: RelayServer, sender: str, recipient: str, password: str = PASSWORD) -> None:
    with smtplib.SMTP_SSL(
        "::1", server.port("submissions"), context=server.ssl_client_context(), timeout=10
    ) as client:
        client.login(sender, password)
        client.sendmail(sender, [recipient], encrypted(sender))


def post_new(server: RelayServer) -> dict[str, str]:
    url = f"http://[::1]:{server.port('http')}/new"
    with urllib.request.urlopen(urllib.request.Request(url, data=b""), timeout=10) as response:
        return json.loads(response.read())


async def test_mail_goes_from_one_account_to_another_on_an_ipv6_lan_relay(
    relay_server: RelayServer,
) -> None:
    assert relay_server.domain == DOMAIN
    alice, bob = f"alice0001@{DOMAIN}", f"bob000001@{DOMAIN}"
    # The first logins create the accounts; the address literal's tag is case-insensitive.
    assert await in_thread(lambda: imap_inbox_count(relay_server, alice)) == 0
    assert await in_thread(lambda: imap_inbox_count(relay_server, "BOB000001@[ipv6:::1]")) == 0
    await in_thread(lambda: submit(relay_server, alice, bob))
    await in_thread(lambda: submit(relay_server, bob, alice.upper()))
    assert await in_thread(lambda: imap_inbox_count(relay_server, bob)) == 1
    assert await in_thread(lambda: imap_inbox_count(relay_server, alice)) == 1


async def test_new_hands_out_a_working_ipv6_literal_address_and_dclogin_link(
    relay_server: RelayServer,
) -> None:
    answer = await in_thread(lambda: post_new(relay_server))
    addr, password = answer["email"], answer["password"]
    assert addr.endswith(f"@{DOMAIN}")
    link = urlsplit(answer["dclogin_url"])
    assert link.scheme == "dclogin" and unquote(link.path) == addr
    query = parse_qs(link.query)
    assert query["ih"] == ["::1"] and query["sh"] == ["::1"]  # a host the client can connect to
    assert await in_thread(lambda: imap_inbox_count(relay_server, addr, password)) == 0
