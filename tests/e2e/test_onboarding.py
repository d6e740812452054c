"""A new user scans the relay's link and has a working profile."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.dclient import LiveRelay, Profile

CONNECTED = 4000  # the core's connectivity value once IMAP and SMTP work


def test_onboarding_from_new_gives_a_working_profile(
    relay: LiveRelay, make_profile: Callable[[str], Profile]
) -> None:
    alice = make_profile("alice")

    assert alice.addr.endswith(f"@{relay.domain}")
    assert alice.call(alice.account.get_config, "configured_addr") == alice.addr
    assert alice.call(alice.account.is_configured)
    [transport] = alice.call(alice.account.list_transports)
    assert transport["addr"] == alice.addr
    assert alice.call(alice.client.rpc.get_connectivity, alice.account.id) >= CONNECTED

    bob = make_profile("bob")
    assert bob.addr != alice.addr
