"""POST /new in LAN mode: the JSON a client gets, its rules, refusals and the rate limit."""

from __future__ import annotations

import dataclasses
import re
import string
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import trio

from relay.config import Accounts
from tests.helpers import make_config
from tests.web.client import HTTPClient, fetch

PASSWORD_CHARS = set(string.ascii_letters + string.digits + string.punctuation)


@pytest.fixture
def unlimited(relay_server):
    """Lift the per-IP limit for tests that ask for many accounts from 127.0.0.1 (as a live
    reload of the limits would)."""
    app = relay_server.app
    limits = dataclasses.replace(
        app.config.limits, new_account_per_minute=1e9, new_account_burst=10**6
    )
    app.config = dataclasses.replace(app.config, limits=limits)


def parse_dclogin(url: str) -> tuple[str, dict[str, str]]:
    assert url.startswith("dclogin:")
    addr, _, query = url[len("dclogin:") :].partition("?")
    params = {key: values[0] for key, values in parse_qs(query, keep_blank_values=True).items()}
    return unquote(addr), params


async def test_a_thousand_calls_give_valid_distinct_credentials(relay_server, unlimited):
    config = relay_server.config
    accounts = config.accounts
    localpart_re = re.compile(rf"^[a-z0-9]{{{accounts.username_max_length}}}$")
    seen = set()
    client = await HTTPClient.connect(relay_server.host, relay_server.port("http"))
    try:
        for i in range(1000):
            path = "/new" if i % 2 else "/cgi-bin/newemail.py"
            reply = await client.request("POST", path)
            assert reply.status == 200, reply.body
            assert reply.headers["content-type"] == "application/json"
            assert reply.headers["cache-control"] == "no-store"
            answer = reply.json()
            assert set(answer) == {"email", "password", "dclogin_url"}
            localpart, _, domain = answer["email"].partition("@")
            assert domain == config.address_domain == f"[{config.mail_domain}]"
            assert localpart_re.match(localpart), localpart
            assert len(answer["password"]) == accounts.password_min_length + 3
            assert set(answer["password"]) <= PASSWORD_CHARS
            addr, params = parse_dclogin(answer["dclogin_url"])
            assert addr == answer["email"]
            assert params["p"] == answer["password"]
            assert (params["v"], params["ic"]) == ("1", "3")
            assert (params["ih"], params["ip"], params["is"]) == (
                config.mail_domain,
                str(config.listen.imaps),
                "ssl",
            )
            assert (params["sh"], params["sp"], params["ss"]) == (
                config.mail_domain,
                str(config.listen.submissions),
                "ssl",
            )
            seen.add(answer["email"])
    finally:
        await client.aclose()
    assert len(seen) == 1000


async def test_get_new_answers_json_in_lan_mode(relay_server):
    reply = await fetch(relay_server.host, relay_server.port("http"), "GET", "/new")
    assert reply.status == 200
    assert {"email", "password", "dclogin_url"} <= set(reply.json())


async def test_the_rate_limit_answers_429_with_a_reason(relay_server):
    client = await HTTPClient.connect(relay_server.host, relay_server.port("http"))
    try:
        statuses = [
            (await client.request("POST", "/new"))
            for _ in range(relay_server.config.limits.new_account_burst + 3)
        ]
    finally:
        await client.aclose()
    codes = [reply.status for reply in statuses]
    assert (
        codes[: relay_server.config.limits.new_account_burst]
        == [200] * relay_server.config.limits.new_account_burst
    )
    assert codes[-1] == 429
    refused = statuses[-1]
    assert int(refused.headers["retry-after"]) >= 1
    assert "reason" in refused.json()


async def test_the_limit_is_per_client_ip(relay_server):
    """Another loopback source address is another client."""
    for _ in range(relay_server.config.limits.new_account_burst + 1):
        await fetch(relay_server.host, relay_server.port("http"), "POST", "/new")
    stream = await trio.open_tcp_stream(
        relay_server.host, relay_server.port("http"), local_address="127.0.0.2"
    )
    client = HTTPClient(stream, relay_server.host)
    try:
        assert (await client.request("POST", "/new")).status == 200
    finally:
        await client.aclose()


@pytest.mark.parametrize("relay_config", ["closed"], indirect=True)
async def test_closed_registration_gives_a_reason_the_client_shows(relay_server):
    reply = await fetch(relay_server.host, relay_server.port("http"), "POST", "/new")
    assert reply.status == 403
    assert set(reply.json()) == {"reason"}
    assert "closed" in reply.json()["reason"]
    page = await fetch(relay_server.host, relay_server.port("http"), "GET", "/")
    assert page.status == 200
    assert "closed" in page.text and "dclogin:" not in page.text


@pytest.fixture
def relay_config(request, tmp_path):
    config = make_config(tmp_path / "data")
    if getattr(request, "param", None) == "closed":
        config = dataclasses.replace(config, accounts=Accounts(registration_open=False))
    return config


async def test_a_request_body_is_ignored_but_bounded(relay_server):
    reply = await fetch(
        relay_server.host, relay_server.port("http"), "POST", "/new", b'{"token": "x"}'
    )
    assert reply.status == 200
    split = urlsplit(reply.json()["dclogin_url"])
    assert split.scheme == "dclogin"
