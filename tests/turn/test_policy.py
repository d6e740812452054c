"""Which peers the TURN server relays to, and the host METADATA names (IPv4 first)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from relay.config import Config, Listen, Turn
from relay.imap.metadata import turn_host
from relay.log import Logger
from relay.turn.service import TurnServer


def server(tmp_path: Path, domain: str, **turn: object) -> TurnServer:
    config = Config(
        mail_domain=domain,
        data_dir=tmp_path,
        listen=Listen(address=["0.0.0.0"]),
        turn=Turn(**turn),  # type: ignore[arg-type]
    )
    s = TurnServer(config, Logger(level="error"))
    s.own_ips = {"0.0.0.0", "198.51.100.7", domain}
    s.service_ports = set(config.listen.services().values()) | {3478}
    return s


@pytest.mark.parametrize(
    "ip, port, allowed",
    [
        ("203.0.113.9", 5000, False),  # TEST-NET-3 is not global either
        ("8.8.8.8", 5000, True),
        ("2001:4860:4860::8888", 5000, True),
        ("127.0.0.1", 5000, False),
        ("::1", 5000, False),
        ("0.0.0.0", 5000, False),
        ("169.254.1.1", 5000, False),
        ("fe80::1", 5000, False),
        ("224.0.0.1", 5000, False),
        ("ff02::1", 5000, False),
        ("255.255.255.255", 5000, False),
        ("240.0.0.1", 5000, False),
        ("10.0.0.5", 5000, False),  # private: not in domain mode
        ("192.168.1.20", 5000, False),
        ("100.64.0.1", 5000, False),
        ("fd00::1", 5000, False),
        ("::ffff:127.0.0.1", 5000, False),  # v4-mapped loopback
        ("198.51.100.7", 993, False),  # our own address, a service port
        ("198.51.100.7", 3478, False),
    ],
)
def test_domain_mode_peers(tmp_path, ip, port, allowed):
    assert server(tmp_path, "chat.example.org").peer_allowed(ip, port) is allowed


def test_private_peers_in_lan_mode_or_when_allowed(tmp_path):
    assert server(tmp_path, "192.168.1.2").peer_allowed("192.168.1.20", 5000)
    assert not server(tmp_path, "192.168.1.2").peer_allowed("192.168.1.2", 993)
    assert not server(tmp_path, "192.168.1.2").peer_allowed("127.0.0.1", 5000)
    allowed = server(tmp_path, "chat.example.org", allow_private_peers=True)
    assert allowed.peer_allowed("10.0.0.5", 5000)
    loop = server(tmp_path, "chat.example.org", allow_loopback_peers=True)
    assert loop.peer_allowed("127.0.0.1", 5000) and not loop.peer_allowed("127.0.0.1", 993)


async def test_metadata_host_is_ipv4_first(tmp_path):
    base = Config(mail_domain="localhost", data_dir=tmp_path)
    assert await turn_host(base) == "127.0.0.1"  # resolved, A record only
    lan = dataclasses.replace(base, mail_domain="192.168.1.2")
    assert await turn_host(lan) == "192.168.1.2"
    fixed = dataclasses.replace(base, turn=Turn(relay_address="198.51.100.7"))
    assert await turn_host(fixed) == "198.51.100.7"
    unknown = dataclasses.replace(base, mail_domain="does-not-exist.invalid")
    assert await turn_host(unknown) == "does-not-exist.invalid"


async def test_metadata_host_is_never_an_ipv6_literal(tmp_path):
    """Delta Chat 2.65 makes no ICE server of an IPv6 literal: an IPv6 relay offers the IPv4
    address its TURN port answers on, or no TURN server."""
    lan6 = Config(mail_domain="fd00::2", data_dir=tmp_path, listen=Listen(address=["::1"]))
    assert await turn_host(lan6) is None
    both = dataclasses.replace(lan6, listen=Listen(address=["fd00::2", "192.168.1.2"]))
    assert await turn_host(both) == "192.168.1.2"
    fixed6 = dataclasses.replace(both, turn=Turn(relay_address="2001:db8::7"))
    assert await turn_host(fixed6) == "192.168.1.2"
