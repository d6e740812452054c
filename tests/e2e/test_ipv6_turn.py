"""A LAN-mode relay whose address is IPv6 (::1) offers real Delta Chat profiles a TURN server
they can use: Delta Chat 2.65 makes no ICE server of an IPv6 literal in the METADATA value, so
the relay names the IPv4 address its TURN port answers on."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from relay.config import Config, Turn
from tests.e2e.dclient import Profile
from tests.helpers import make_config
from tests.turn.util import free_udp_port


@pytest.fixture
def relay_config(tmp_path: Path) -> Config:
    config = make_config(tmp_path / "relay-data", "::1")
    listen = dataclasses.replace(config.listen, address=["::1", "127.0.0.1"])
    return dataclasses.replace(config, listen=listen, turn=Turn(port=free_udp_port()))


def test_an_ipv6_relay_offers_its_turn_server_at_its_ipv4_address(
    relay_config: Config, make_profile: Callable[[str], Profile]
) -> None:
    alice = make_profile("alice")
    assert alice.addr.endswith("@[IPv6:::1]")
    ice = json.loads(alice.call(alice.client.rpc.ice_servers, alice.account.id))
    assert [server["urls"] for server in ice] == [[f"turn:127.0.0.1:{relay_config.turn.port}"]]
