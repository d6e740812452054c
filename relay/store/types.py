"""Value types and exceptions shared by the store and its callers (SMTP, IMAP, web, federation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ChangeKind = Literal["exists", "expunge", "flags", "resync"]
FlagMode = Literal["add", "remove", "replace"]


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


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


@dataclass(frozen=True, slots=True)
class LoginResult:
    ok: bool
    created: bool = False
    reason: str = ""  # for logs only; clients get a generic failure


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
