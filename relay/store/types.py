"""Value types and exceptions shared by the store and its callers (SMTP, IMAP, web, federation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

ChangeKind = Literal["exists", "expunge", "flags", "resync"]
FlagMode = Literal["add", "remove", "replace"]
AccountCreation = Literal["created", "exists", "blocked"]
ReportFate = Literal["", "delivered", "queued", "dropped"]


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class StorageFull(StoreError):
    """The data disk is at its free-space watermark: nothing new is taken, deletions go on."""


class NoSuchAccount(StoreError):
    def __init__(self, addr: str) -> None:
        super().__init__(addr)
        self.addr = addr


class QuotaExceeded(StoreError):
    def __init__(self, addr: str) -> None:
        super().__init__(addr)
        self.addr = addr


class MailboxError(StoreError):
    """An IMAP-level refusal; str(exc) is a human-readable reason the IMAP layer may send."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NoSuchMailbox(MailboxError):
    """The mailbox does not exist (IMAP answers [TRYCREATE] for APPEND/COPY/MOVE targets)."""


class NoSuchMessage(StoreError):
    """read() of a uid that does not exist (never existed or was expunged)."""


class NoSuchQueueEntry(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class MessageMeta:
    uid: int
    flags: frozenset[str]
    size: int
    internal_date: datetime  # UTC, timezone-aware
    modseq: int = 0  # CONDSTORE-style per-message change counter (addition to the contract)


@dataclass(frozen=True, slots=True)
class MailboxSnapshot:
    uidvalidity: int
    uidnext: int
    messages: list[MessageMeta]  # sorted by uid
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class MailboxChange:
    mailbox: str
    kind: ChangeKind  # "resync": events were dropped, re-read the mailbox
    uids: tuple[int, ...] = ()
    # "exists" of a message whose body the store had in hand (a delivery, an APPEND): what a
    # snapshot would say of it and its header section, so a watcher can show it without a
    # query (WebIMAP's new_message). Empty for copies and moves. Not part of equality.
    added: tuple[MessageMeta, ...] = field(default=(), compare=False)
    header: bytes = field(default=b"", compare=False)


@dataclass(frozen=True, slots=True)
class MailboxEntry:
    name: str
    subscribed: bool
    special_use: str | None = None  # e.g. "\\Trash"; None for ordinary mailboxes


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: str
    sender: str
    recipients: list[str]
    size: int
    created: datetime
    attempts: int
    next_attempt: datetime
    last_error: str = ""


@dataclass(frozen=True)
class AccountInfo:
    """One account as the admin sees it: no password hash, no mail."""

    addr: str
    created: datetime
    login_day: int  # the store clock's day number of the last login
    used_bytes: int


@dataclass(frozen=True, slots=True)
class AuthRecord:
    """What login needs to know about an address, read in one go."""

    pwhash: str | None  # None: no such account
    blocked: bool
    login_day: int  # store day number of the last recorded login (0 without an account)


@dataclass
class ExpiryResult:
    accounts: int = 0
    messages: int = 0
    segments: int = 0
    clamped: int = 0  # stamps in the future of the (confirmed) clock set back to now


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What the caller wants sent to the sender when some local recipients fail."""

    data: bytes  # the report message (multipart/report) to deliver


@dataclass(frozen=True, slots=True)
class Delivery:
    """One incoming message for the store to take in a single all-or-nothing operation."""

    sender: str  # envelope sender, "" for a null sender
    local: tuple[str, ...]  # local recipients (any case; the store lower-cases them)
    local_data: bytes  # the copy stored in local INBOXes
    remote: tuple[str, ...] = ()  # remote recipients: ONE queue entry with remote_data
    remote_data: bytes = b""
    sender_is_local: bool = False  # where a report goes: sender's INBOX, or the queue
    # Builds the report from the failures; runs in the database thread, so it must be pure
    # (no I/O, no awaiting) and quick. None, or returning None: no report.
    report: Callable[[dict[str, StoreError]], DeliveryReport | None] | None = None
    # Push notifications: the metadata key holding a recipient's device tokens, and what
    # turns its stored value into the live tokens (pure, in the database thread). One item
    # per live token of every local recipient who is not the sender is recorded with the
    # delivery itself. None: push is off.
    push_tokens: tuple[str, Callable[[str | None], list[str]]] | None = None


@dataclass(frozen=True, slots=True)
class PushItem:
    """One notification to send: POST `token` for `addr`; `created` starts its deadline."""

    id: str
    addr: str
    token: str
    created: int


@dataclass
class DeliveryOutcome:
    delivered: list[str] = field(default_factory=list)  # local recipients stored
    queued: list[str] = field(default_factory=list)  # remote recipients queued
    queue_id: str | None = None
    failed: dict[str, StoreError] = field(default_factory=dict)  # NoSuchAccount, QuotaExceeded
    # "" (none), "delivered" (sender's INBOX), "queued", or "dropped" (the sender's INBOX
    # could not take it; not an error: the sender already has its answer for the others)
    report: ReportFate = ""
    push: list[PushItem] = field(default_factory=list)  # durable with the delivery


@dataclass(slots=True)
class Mailbox:
    """A mailbox row, as both backends read it (internal to the store)."""

    id: int
    addr: str
    name: str
    uidvalidity: int
    uidnext: int
    modseq: int
    bytes: int
    subscribed: bool
    special_use: str | None


def ignore_change() -> None:
    """The default `on_change` of MailStore.watch(): no one to wake."""
