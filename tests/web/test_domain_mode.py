"""Domain mode (a DNS name with a trusted certificate): DCACCOUNT, redirects and MTA-STS."""

from __future__ import annotations

import ssl

import pytest

from relay.config import Privacy
from tests.web.client import fetch
from tests.web.conftest import DOMAIN, domain_config


@pytest.fixture
def relay_config(tmp_path):
    return domain_config(tmp_path, privacy=Privacy(privacy_mail="privacy@relay.test"))


def tls_for(relay_server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=relay_server.config.tls.cert)


async def https(relay_server, method: str, path: str, body: bytes = b""):
    return await fetch(
        relay_server.host,
        relay_server.port("https"),
        method,
        path,
        body,
        tls=tls_for(relay_server),
        sni=DOMAIN,
    )


async def test_invite_page_shows_the_dcaccount_link(relay_server):
    page = await https(relay_server, "GET", "/")
    assert page.status == 200
    assert f"DCACCOUNT:https://{DOMAIN}:{relay_server.port('https')}/new" in page.text
    assert 'href="mailto:privacy@relay.test"' in page.text
    assert "self-signed" not in page.text
    assert "dclogin:" not in page.text


async def test_post_new_gives_credentials_without_a_dclogin_link(relay_server):
    reply = await https(relay_server, "POST", "/new")
    assert reply.status == 200
    answer = reply.json()
    assert set(answer) == {"email", "password"}
    assert answer["email"].endswith(f"@{DOMAIN}")


async def test_get_new_redirects_to_the_dcaccount_scheme(relay_server):
    reply = await https(relay_server, "GET", "/new")
    assert reply.status == 301
    port = relay_server.port("https")
    assert reply.headers["location"].lower() == f"dcaccount:https://{DOMAIN}:{port}/new"


async def test_plain_http_redirects_to_https(relay_server):
    port = relay_server.port("https")
    reply = await fetch(
        relay_server.host, relay_server.port("http"), "GET", "/mail/config-v1.1.xml?x=1"
    )
    assert reply.status == 301
    assert reply.headers["location"] == f"https://{DOMAIN}:{port}/mail/config-v1.1.xml?x=1"
    post = await fetch(relay_server.host, relay_server.port("http"), "POST", "/new")
    assert post.status == 308


async def test_mta_sts_policy(relay_server):
    reply = await https(relay_server, "GET", "/.well-known/mta-sts.txt")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    lines = reply.body.split(b"\r\n")
    policy = dict(line.decode().split(": ", 1) for line in lines if line)
    assert policy == {"version": "STSv1", "mode": "enforce", "mx": DOMAIN, "max_age": "2419200"}


async def test_acme_challenges_are_answered_over_plain_http(relay_server):
    folder = relay_server.config.data_dir / "acme" / "http-01"
    folder.mkdir(parents=True)
    (folder / "tok-EN_1").write_text("tok-EN_1.thumbprint")
    http = relay_server.port("http")
    reply = await fetch(relay_server.host, http, "GET", "/.well-known/acme-challenge/tok-EN_1")
    assert (reply.status, reply.body) == (200, b"tok-EN_1.thumbprint")
    missing = await fetch(relay_server.host, http, "GET", "/.well-known/acme-challenge/other")
    assert missing.status == 404
    sneaky = await fetch(relay_server.host, http, "GET", "/.well-known/acme-challenge/..%2Fkey.pem")
    assert sneaky.status == 404
