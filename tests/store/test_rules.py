"""The backend-free chatmail rules, checked directly (the store tests check them in use)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from relay.store import rules

DAY = 86400
NOW = 1_800_000_000.0
KIB = 1024


def test_make_room_drops_oldest_down_to_the_target_but_spares_todays_mail() -> None:
    quota = 100 * KIB
    old = int(NOW - 3 * DAY)
    messages = [(1, 1, 20 * KIB, old), (2, 7, 20 * KIB, old + 1), (1, 2, 20 * KIB, int(NOW))]
    # below 75 % after the new message: nothing to do, and the messages are not even read
    untouched = rules.make_room(10 * KIB, 10 * KIB, quota, iter(()), NOW)
    assert untouched == rules.RoomPlan([], True)
    # 60 + 20 > 75: expunge the oldest until usage <= 70 - 20
    plan = rules.make_room(60 * KIB, 20 * KIB, quota, messages, NOW)
    assert plan == rules.RoomPlan([(1, 1)], True)
    # the message from today is spared even if that means the new one does not fit
    plan = rules.make_room(90 * KIB, 30 * KIB, quota, messages[2:], NOW)
    assert plan == rules.RoomPlan([], False)
    # bigger than the whole quota: refused without expunging anything
    assert rules.make_room(0, quota + 1, quota, messages, NOW) == rules.RoomPlan([], False)


def test_oldest_to_expunge_reads_lazily() -> None:
    read: list[int] = []

    def rows() -> Iterator[rules.MessageRow]:
        for uid in range(1, 100):
            read.append(uid)
            yield (1, uid, 10, int(NOW - 5 * DAY))

    victims, used = rules.oldest_to_expunge(50, 30, rows(), NOW)
    assert victims == [(1, 1), (1, 2)] and used == 30
    assert read == [1, 2, 3]  # stopped right after deciding


def test_expiry_selection() -> None:
    retention = SimpleNamespace(
        delete_mails_after=20, delete_large_after=7, delete_inactive_users_after=90
    )
    cut = rules.expiry_cutoffs(NOW, retention)
    seen = frozenset({"\\Seen"})
    eight_days = int(NOW - 8 * DAY)
    assert rules.message_due(cut, 100, int(NOW - 21 * DAY), frozenset())
    assert not rules.message_due(cut, 100, eight_days, seen)  # small: 20 days
    assert rules.message_due(cut, 300_000, eight_days, seen)  # large and seen: 7 days
    assert not rules.message_due(cut, 300_000, eight_days, frozenset())  # never seen
    assert not rules.message_due(cut, 300_000, int(NOW - 6 * DAY), seen)
    assert cut.candidates_before == NOW - 7 * DAY
    today = rules.day_number(NOW)
    assert rules.account_inactive(cut, today - 91)
    assert not rules.account_inactive(cut, today - 90)


def test_names_and_flags() -> None:
    assert rules.canonical_name("inbox") == "INBOX" and rules.canonical_name("Sent") == "Sent"
    assert rules.special_use("Sent Messages") == "\\Sent" and rules.special_use("x") is None
    flags = rules.normalize_flags(["\\seen", "\\Recent", "$label", ""])
    assert flags == frozenset({"\\Seen", "$label"})
    assert rules.decode_flags(rules.encode_flags(flags)) == flags
    assert rules.encode_flags(flags) == "$label \\Seen"
    assert rules.decode_flags("") == frozenset()


def test_account_rules(tmp_path: Path) -> None:
    accounts = SimpleNamespace(username_min_length=9, username_max_length=9, password_min_length=9)
    config = SimpleNamespace(address_domain="Example.Org", accounts=accounts, data_dir=tmp_path)
    assert rules.is_local(config, "abcdefghi@example.org")
    assert not rules.is_local(config, "abcdefghi@example.net")
    assert rules.creation_refusal(config, "abcdefghi@example.org", "long-enough") is None
    assert rules.creation_refusal(config, "abcdefghi@example.org", "short")
    assert rules.creation_refusal(config, "ABCDEFGHI@example.org", "long-enough")
