"""Nothing is lost when the receiver is offline or the relay restarts."""

from __future__ import annotations

import pytest

from tests.e2e.dclient import LiveRelay, Profile

RECONNECT_TIMEOUT = 150  # the core backs off reconnects and rate-limits its own logins


def test_message_to_offline_receiver_arrives_when_it_comes_online(
    pair: tuple[Profile, Profile],
) -> None:
    alice, bob = pair
    bob.go_offline()

    msg = alice.call(alice.chat_with(bob).send_text, "while you were away")
    alice.wait_for("MsgDelivered", lambda e: e.msg_id == msg.id)
    bob.go_online(timeout=RECONNECT_TIMEOUT)

    assert bob.wait_incoming().text == "while you were away"


@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "sigkill"])
def test_relay_restart_mid_conversation_loses_nothing(
    relay: LiveRelay, pair: tuple[Profile, Profile], crash: bool
) -> None:
    alice, bob = pair
    to_bob, to_alice = alice.chat_with(bob), bob.chat_with(alice)
    alice.call(to_bob.send_text, "before the restart")
    assert bob.wait_incoming().text == "before the restart"

    # Accepted (250) while bob is offline, so it sits only in the relay's store.
    bob.go_offline()
    msg = alice.call(to_bob.send_text, "stored across the restart")
    alice.wait_for("MsgDelivered", lambda e: e.msg_id == msg.id)
    relay.restart(crash=crash)
    bob.go_online(timeout=RECONNECT_TIMEOUT)
    assert bob.wait_incoming(timeout=RECONNECT_TIMEOUT).text == "stored across the restart"

    # Both sides reconnect by themselves and keep talking.
    alice.call(to_bob.send_text, "after the restart")
    assert bob.wait_incoming(timeout=RECONNECT_TIMEOUT).text == "after the restart"
    bob.call(to_alice.send_text, "reply after the restart")
    got = alice.wait_incoming(timeout=RECONNECT_TIMEOUT)
    assert got.text == "reply after the restart"
