"""The chatmail rules of the store, free of any storage backend.

Everything here is a pure function or a constant: the embedded (SQLite) operations fetch rows,
ask these functions what to do, and emit the result; a second backend (PostgreSQL) implements
storage only and asks the very same functions, so both behave alike by construction. (The
free space of the data disk, which also stops new accounts, is the store's: relay/store/space.py.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

DAY = 86400

# -- quota (dovecot quota_warning + chatmail-quota-expire) ------------------------------------
# Above 75 % of the quota the oldest mail is removed down to 70 %, but never mail younger than
# a day: a burst of new mail must not wipe what the user has not even had time to fetch.
QUOTA_EXPIRE_ABOVE = 0.75
QUOTA_EXPIRE_TARGET = 0.70
QUOTA_SPARE_YOUNGER_THAN = DAY

# -- expiry (chatmail-expire) -----------------------------------------------------------------
LARGE_MESSAGE = 200_000  # "large" mail is expired sooner once a client has seen it

# (mailbox id, uid, size, date): one message of an account as the quota rules see it.
MessageRow = tuple[int, int, int, int]


def day_number(now: float) -> int:
    """The UTC day number used for login days, segment days and inactivity."""
    return int(now // DAY)


def quota_target(quota: int) -> int:
    """Usage the quota rules shrink an account to when they have to make room."""
    return int(quota * QUOTA_EXPIRE_TARGET)


def oldest_to_expunge(
    used: int, target: int, messages: Iterable[MessageRow], now: float
) -> tuple[list[tuple[int, int]], int]:
    """(mailbox id, uid) of the oldest messages to drop until usage <= target, and the usage
    left after dropping them.

    messages must be sorted oldest first; iteration stops as soon as the decision is made, so a
    lazy cursor is read only as far as needed. Mail younger than a day is always spared.
    """
    victims: list[tuple[int, int]] = []
    for mailbox_id, uid, size, date in messages:
        if used <= target or date > now - QUOTA_SPARE_YOUNGER_THAN:
            break
        victims.append((mailbox_id, uid))
        used -= size
    return victims, used


@dataclass(frozen=True, slots=True)
class RoomPlan:
    expunge: list[tuple[int, int]]  # (mailbox id, uid) to expunge first, oldest first
    fits: bool  # False: the message may not be stored (QuotaExceeded); expunge is then moot


def needs_room(used: int, size: int, quota: int) -> bool:
    """Whether storing size bytes triggers the make-room pass (only then are messages read)."""
    return size <= quota and used + size > quota * QUOTA_EXPIRE_ABOVE


def make_room(
    used: int, size: int, quota: int, messages: Iterable[MessageRow], now: float
) -> RoomPlan:
    """What storing a message of size bytes in an account using used bytes requires.

    messages: the account's messages sorted oldest first (read only when room must be made).
    """
    if size > quota:  # bigger than the whole quota: nothing is expunged for a lost cause
        return RoomPlan([], False)
    victims: list[tuple[int, int]] = []
    if needs_room(used, size, quota):
        victims, used = oldest_to_expunge(used, quota_target(quota) - size, messages, now)
    return RoomPlan(victims, used + size <= quota)


@dataclass(frozen=True, slots=True)
class ExpiryCutoffs:
    """Unix times (and a day number) before which things are due for expiry."""

    mails_before: float  # any message dated before this is due
    large_before: float  # a large \\Seen message dated before this is due
    inactive_before_day: int  # an account whose last login day is before this is removed

    @property
    def candidates_before(self) -> float:
        """No message dated at or after this can be due: a backend may prefilter with it."""
        return max(self.mails_before, self.large_before)


def expiry_cutoffs(now: float, retention: Any) -> ExpiryCutoffs:
    """retention: the config section with delete_mails_after, delete_large_after and
    delete_inactive_users_after (days)."""
    return ExpiryCutoffs(
        mails_before=now - retention.delete_mails_after * DAY,
        large_before=now - retention.delete_large_after * DAY,
        inactive_before_day=day_number(now) - retention.delete_inactive_users_after,
    )


def message_due(cutoffs: ExpiryCutoffs, size: int, date: int, flags: frozenset[str]) -> bool:
    """Whether a message is due for expiry: old, or large and seen and somewhat old."""
    if date < cutoffs.mails_before:
        return True
    return size > LARGE_MESSAGE and date < cutoffs.large_before and "\\Seen" in flags


def due_by_mailbox(
    cutoffs: ExpiryCutoffs, candidates: Iterable[tuple[str, int, int, int, int, str]]
) -> dict[tuple[str, int], list[int]]:
    """The due uids of (addr, mailbox id) from candidate rows (addr, mailbox, uid, size, date,
    flags) in mailbox and uid order."""
    due: dict[tuple[str, int], list[int]] = {}
    for addr, mailbox_id, uid, size, date, flags in candidates:
        if message_due(cutoffs, size, date, decode_flags(flags)):
            due.setdefault((addr, mailbox_id), []).append(uid)
    return due


def tokens_to_notify(
    sender: str,
    delivered: Iterable[str],
    push_tokens: tuple[str, Callable[[str | None], list[str]]] | None,
    metadata: Callable[[str, str], str | None],
) -> dict[str, list[str]]:
    """The live push tokens of each recipient who did not send the message; `metadata(addr,
    key)` reads the stored token list."""
    if push_tokens is None:
        return {}
    key, live_tokens = push_tokens
    found = {}
    for addr in delivered:
        if addr == sender.lower():
            continue  # the owner's own message (another device of theirs sent it)
        if tokens := live_tokens(metadata(addr, key)):
            found[addr] = tokens
    return found


def account_inactive(cutoffs: ExpiryCutoffs, login_day: int) -> bool:
    return login_day < cutoffs.inactive_before_day


# -- mailboxes and flags (IMAP semantics the store keeps) ------------------------------------

SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
SPECIAL_USE = {
    "drafts": "\\Drafts",
    "sent": "\\Sent",
    "sent messages": "\\Sent",
    "trash": "\\Trash",
    "junk": "\\Junk",
}


def canonical_name(name: str) -> str:
    """RFC 3501: INBOX is case-insensitive, every other name is kept as given."""
    return "INBOX" if name.upper() == "INBOX" else name


def special_use(name: str) -> str | None:
    """The RFC 6154 attribute a new mailbox of this name gets (clients look for these)."""
    return SPECIAL_USE.get(name.lower())


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags in canonical case; \\Recent is session state and never stored."""
    out = set()
    for f in flags:
        f = SYSTEM_FLAGS.get(f.lower(), f)
        if f.lower() != "\\recent" and f:
            out.add(f)
    return frozenset(out)


def encode_flags(flags: frozenset[str]) -> str:
    """Sorted, so equal flag sets are stored (and logged) identically."""
    return " ".join(sorted(flags))


def decode_flags(text: str) -> frozenset[str]:
    return frozenset(text.split()) if text else frozenset()


# -- accounts (chatmail JIT creation on first login) ------------------------------------------

LOCALPART_RE = re.compile(r"^[a-z0-9._-]+$")


def is_local(config: Any, addr: str) -> bool:
    return addr.rpartition("@")[2] == config.address_domain.lower()


def creation_refusal(config: Any, addr: str, password: str) -> str | None:
    """Why addr/password may not become a new account, or None if it may."""
    acc = config.accounts
    if addr.count("@") != 1:
        return "address must contain exactly one @"
    local, domain = addr.split("@")
    if domain != config.address_domain.lower():
        return "not a local address"
    if not acc.username_min_length <= len(local) <= acc.username_max_length:
        return "username length out of range"
    if not LOCALPART_RE.match(local):
        return "username has characters outside a-z 0-9 . _ -"
    if len(password) < acc.password_min_length:
        return "password too short"
    return None
