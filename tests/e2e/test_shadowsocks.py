"""Real Delta Chat cores reach the relay only through its Shadowsocks port, for each cipher.

The profiles get `proxy_url=ss://...` (the link the relay hands out) and `proxy_enabled=1`
before they are set up, and their login links name 127.0.0.7 as the IMAP and SMTP host: the
relay listens on 127.0.0.1 only, so a direct connection there is refused, while the relay's
Shadowsocks port takes any loopback address as itself. Onboarding, SecureJoin and messages
both ways then work, and the relay's admin status counts the proxied sessions.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from relay.shadowsocks.link import proxy_url
from tests.e2e.dclient import DCClient, LiveRelay, Profile
from tests.helpers import free_ports, make_config

ONLY_VIA_PROXY = "127.0.0.7"  # loopback, where nothing of the relay listens


@pytest.fixture(params=["chacha20-ietf-poly1305", "aes-256-gcm", "aes-128-gcm"])
def relay_config(tmp_path, request):
    from relay.config import Shadowsocks

    (port,) = free_ports(1)
    return make_config(
        tmp_path / "relay-data", shadowsocks=Shadowsocks(port=port, cipher=request.param)
    )


def admin(relay: LiveRelay, method: str) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(relay.config.data_dir / "admin.sock"))
        s.sendall(json.dumps({"id": 1, "method": method, "params": {}}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    return json.loads(data)["result"]


def proxied_profile(name: str, relay: LiveRelay, dc: DCClient, ss_url: str) -> Profile:
    answer = relay.new_account()
    host = relay.host
    link = answer["dclogin_url"].replace(f"ih={host}", f"ih={ONLY_VIA_PROXY}")
    link = link.replace(f"sh={host}", f"sh={ONLY_VIA_PROXY}")
    assert link.count(ONLY_VIA_PROXY) == 2, link
    account = dc.call(dc.dc.add_account)
    profile = Profile(name, account, answer["email"], answer["password"], dc)
    dc.call(account.set_config, "displayname", name)
    dc.call(account.set_config, "proxy_url", ss_url)
    dc.call(account.set_config, "proxy_enabled", "1")
    dc.call(account.add_transport_from_qr, link, timeout=90)
    profile.go_online(90)
    return profile


def test_onboarding_securejoin_and_messages_through_shadowsocks(
    relay: LiveRelay, dc: DCClient
) -> None:
    onboarding = admin(relay, "new_onboarding")
    ss_url = onboarding["proxy_url"]
    assert ss_url == proxy_url(relay.config)
    with pytest.raises(ConnectionRefusedError):  # the hosts the profiles are given
        socket.create_connection((ONLY_VIA_PROXY, relay.port("imaps")), timeout=5).close()

    alice = proxied_profile("alice", relay, dc, ss_url)
    bob = proxied_profile("bob", relay, dc, ss_url)
    bob.securejoin(alice)
    alice.call(alice.chat_with(bob).send_text, "hello bob, through the proxy")
    got = bob.wait_incoming(lambda m: m.text == "hello bob, through the proxy")
    assert got.show_padlock
    bob.call(bob.chat_with(alice).send_text, "hello alice")
    assert alice.wait_incoming(lambda m: m.text == "hello alice").show_padlock

    status = admin(relay, "status")["shadowsocks"]
    assert status["running"] and status["port"] == relay.config.shadowsocks.port
    assert status["connections"].get("imaps", 0) >= 2  # one IDLE session per profile at least
    assert status["connections"].get("submissions", 0) >= 2
