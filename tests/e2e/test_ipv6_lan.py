"""Real Delta Chat profiles on a LAN-mode relay whose address is IPv6 (::1): onboarded from
/new and its dclogin link, their addresses user@[IPv6:::1], verified and writing both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import Config
from tests.e2e.dclient import Profile
from tests.helpers import make_config


@pytest.fixture
def relay_config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "relay-data", "::1")


def test_two_profiles_on_an_ipv6_lan_relay_write_both_ways(pair: tuple[Profile, Profile]) -> None:
    alice, bob = pair
    assert alice.addr.endswith("@[IPv6:::1]") and bob.addr.endswith("@[IPv6:::1]")

    alice.call(alice.chat_with(bob).send_text, "hello bob over IPv6")
    got = bob.wait_incoming(lambda m: m.text == "hello bob over IPv6")
    assert got.show_padlock

    bob.call(bob.chat_with(alice).send_text, "hello alice over IPv6")
    got = alice.wait_incoming(lambda m: m.text == "hello alice over IPv6")
    assert got.show_padlock
    # The core keeps addresses in lower case; the literal's "IPv6:" tag is case-insensitive.
    assert alice.call(got.sender.get_snapshot).address == bob.addr.lower()
