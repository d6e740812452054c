"""MailStore: what the rest of the relay may ask of a store, whatever backs it.

Two stores implement it: the embedded one (relay.store.store.Store: segment log + SQLite) and
the PostgreSQL one that several nodes share (relay.store.postgres.PgStore); both apply the same
chatmail rules (relay.store.rules), so they behave alike. Code outside relay/store is typed
against MailStore only, so it cannot come to depend on one backend's internals.

Conventions every implementation keeps:
- addresses are case-insensitive (the store lower-cases them); mailbox names are kept as given
  except INBOX, which is case-insensitive;
- every write returns only once it is durable, and IDLE watchers hear of it only then;
- refusals are StoreError subclasses (NoSuchAccount, QuotaExceeded, MailboxError, ...); any
  other exception is a failure of the store itself;
- below the free-space watermark (config.accounts.min_free_disk_space) what adds data raises
  StorageFull, what frees space still succeeds, and `storage_full()` says so at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import trio

from .types import (
    AccountCreation,
    AccountInfo,
    AuthRecord,
    Delivery,
    DeliveryOutcome,
    DeliveryReport,
    FlagMode,
    MailboxChange,
    MailboxEntry,
    MailboxSnapshot,
    MessageMeta,
    PushItem,
    QueueEntry,
    ignore_change,
)

__all__ = [
    "AuthRecord",
    "Delivery",
    "DeliveryOutcome",
    "DeliveryReport",
    "MailStore",
]


@runtime_checkable
class MailStore(Protocol):
    config: Any  # the live relay configuration; the server replaces it on reload

    # -- account primitives (the core does hashing, caching, JIT rules and throttling) ------

    def today(self) -> int:
        """The store clock's day number, the unit of AuthRecord.login_day."""
        ...

    def storage_full(self) -> bool:
        """Whether new data would be refused now (for early refusals: RCPT, /new, status)."""
        ...

    def storage_problems(self) -> list[str]:
        """What is wrong with the storage now ("data disk full", the last write failure)."""
        ...

    async def account_auth(self, addr: str) -> AuthRecord: ...

    async def add_account(self, addr: str, pwhash: str) -> AccountCreation: ...

    async def touch_login(self, addr: str) -> None:
        """Record a login today; at most one write a day, never raises for a storage error."""
        ...

    async def account_exists(self, addr: str) -> bool: ...

    async def account_count(self) -> int: ...

    async def export_accounts(self) -> list[dict[str, str]]: ...

    async def import_accounts(self, accounts: Sequence[dict[str, str]]) -> int: ...

    async def delete_account(self, addr: str) -> None: ...

    async def list_accounts(self) -> list[AccountInfo]: ...

    async def block(self, addr: str) -> None:
        """Remove the account (if any) and refuse to ever create it again."""
        ...

    async def unblock(self, addr: str) -> None: ...

    async def is_blocked(self, addr: str) -> bool: ...

    async def blocked_addresses(self) -> list[str]: ...

    # -- delivery -------------------------------------------------------------------------

    async def commit_delivery(self, delivery: Delivery) -> DeliveryOutcome:
        """Local copies, the queue entry and the failure report as ONE durable operation."""
        ...

    async def append(
        self,
        addr: str,
        mailbox: str,
        data: bytes,
        *,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> tuple[int, int]:
        """(uidvalidity, uid) of the new message."""
        ...

    # -- mailboxes ------------------------------------------------------------------------

    async def list_mailboxes(self, addr: str) -> list[MailboxEntry]: ...

    async def create_mailbox(self, addr: str, name: str) -> None: ...

    async def delete_mailbox(self, addr: str, name: str) -> None: ...

    async def rename_mailbox(self, addr: str, old: str, new: str) -> None: ...

    async def subscribe(self, addr: str, name: str, on: bool) -> None: ...

    async def snapshot(self, addr: str, mailbox: str) -> MailboxSnapshot: ...

    async def read(self, addr: str, mailbox: str, uid: int) -> bytes: ...

    async def set_flags(
        self, addr: str, mailbox: str, uids: Sequence[int], flags: Iterable[str], mode: FlagMode
    ) -> list[MessageMeta]: ...

    async def expunge(self, addr: str, mailbox: str, uids: Sequence[int] | None) -> list[int]:
        """uids None: every message flagged \\Deleted."""
        ...

    async def copy(
        self, addr: str, src: str, uids: Sequence[int], dst: str
    ) -> list[tuple[int, int]]: ...

    async def move(
        self, addr: str, src: str, uids: Sequence[int], dst: str
    ) -> list[tuple[int, int]]: ...

    def watch(
        self, addr: str, on_change: Callable[[], None] = ignore_change
    ) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[MailboxChange]]:
        """Change events of addr's mailboxes, each right after the change is durable (committed,
        for a shared database); on_change() is called after each is queued."""

    # -- metadata, quota ------------------------------------------------------------------

    async def get_metadata(self, addr: str, key: str) -> str | None: ...

    async def set_metadata(self, addr: str, key: str, value: str | None) -> None: ...

    async def update_metadata(
        self, addr: str, key: str, change: Callable[[str | None], str | None]
    ) -> str | None:
        """Atomic read-modify-write; change must be pure (it may run in another thread)."""
        ...

    async def quota_usage(self, addr: str) -> int: ...

    # -- outbound queue -------------------------------------------------------------------

    async def push_pending(
        self, key: str, live_tokens: Callable[[str | None], list[str]]
    ) -> list[PushItem]:
        """Every push notification not yet done (recorded by commit_delivery), its token read
        from the metadata `key` of the recipient through `live_tokens` (Delivery.push_tokens)."""
        ...

    async def push_done(self, ids: Sequence[str]) -> None:
        """Forget sent or dropped items (one write for all of them)."""
        ...

    async def enqueue(self, sender: str, recipients: list[str], data: bytes) -> str: ...

    async def queue_list(self) -> list[QueueEntry]: ...

    async def queue_remove(self, id: str, recipients: list[str] | None = None) -> None: ...

    async def queue_update(
        self,
        id: str,
        *,
        attempts: int | None = None,
        next_attempt: datetime | None = None,
        last_error: str | None = None,
    ) -> None: ...

    async def queue_read(self, id: str) -> bytes: ...

    on_queue_kick: Callable[[], None]  # the outbound worker's kick; another node may call it

    async def queue_kick(self) -> None:
        """Ask the outbound workers of the other nodes sharing this store to look at the queue
        at once (an admin's retry); they call their `on_queue_kick`. This node's own worker is
        kicked by the caller."""
        ...

    async def queue_claim(self, id: str, seconds: float) -> bool:
        """Whether this node may send the entry now: True leases it to this node for `seconds`
        (or until its next queue_update), False means another node holds it. Nodes sharing a
        store call this before each attempt so that only one of them sends each entry."""
        ...
