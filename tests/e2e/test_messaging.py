"""Conversations between real Delta Chat profiles on one relay."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from tests.e2e.dclient import Profile

ATTACHMENT_SIZE = 10 * 1024 * 1024


def test_securejoin_verifies_both_sides(make_profile: Callable[[str], Profile]) -> None:
    alice, bob = make_profile("alice"), make_profile("bob")

    bob.securejoin(alice)

    for me, other in ((alice, bob), (bob, alice)):
        contact = me.call(me.call(me.account.get_contact_by_addr, other.addr).get_snapshot)
        assert contact.is_key_contact and contact.e2ee_avail, (
            f"{me.name} has no key of {other.name}"
        )
        chat = me.call(me.chat_with(other).get_basic_snapshot)
        assert chat.is_encrypted and not chat.is_contact_request


def test_one_to_one_both_ways(pair: tuple[Profile, Profile]) -> None:
    alice, bob = pair

    alice.call(alice.chat_with(bob).send_text, "hello bob")
    got = bob.wait_incoming(lambda m: m.text == "hello bob")
    assert got.show_padlock

    bob.call(bob.chat_with(alice).send_text, "hello alice")
    got = alice.wait_incoming(lambda m: m.text == "hello alice")
    assert got.show_padlock
    assert alice.call(got.sender.get_snapshot).address == bob.addr


def test_group_of_three(make_profile: Callable[[str], Profile]) -> None:
    alice, bob, carol = make_profile("alice"), make_profile("bob"), make_profile("carol")
    bob.securejoin(alice)
    carol.securejoin(alice)

    group = alice.call(alice.account.create_group, "three")
    for member in (bob, carol):
        contact = alice.call(alice.account.get_contact_by_addr, member.addr)
        alice.call(group.add_contact, contact)
    alice.call(group.send_text, "welcome both")

    replies = {}
    for member in (bob, carol):
        got = member.wait_incoming(lambda m: m.text == "welcome both")
        assert got.show_padlock
        replies[member.name] = got.chat_id
    bob_group = bob.call(bob.account.get_chat_by_id, replies["bob"])
    bob.call(bob_group.send_text, "hi from bob")

    for member in (alice, carol):
        got = member.wait_incoming(lambda m: m.text == "hi from bob")
        assert member.call(got.sender.get_snapshot).address == bob.addr
    assert alice.call(group.num_contacts) == 3


def test_ten_megabyte_attachment_arrives_byte_identical(
    pair: tuple[Profile, Profile], tmp_path: Path
) -> None:
    alice, bob = pair
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(ATTACHMENT_SIZE))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    alice.call(alice.chat_with(bob).send_file, str(path), timeout=120)

    # Large files travel as a small pre-message plus the full post-message; wait for the file.
    got = bob.wait_incoming(lambda m: m.file_name == "payload.bin", timeout=120)
    snapshot = bob.wait_message(got.id, lambda m: m.download_state == "Done", timeout=120)
    received = Path(snapshot.file).read_bytes()
    assert len(received) == ATTACHMENT_SIZE
    assert hashlib.sha256(received).hexdigest() == digest


def test_single_dot_text_arrives(pair: tuple[Profile, Profile]) -> None:
    alice, bob = pair

    alice.call(alice.chat_with(bob).send_text, ".")

    assert bob.wait_incoming().text == "."
