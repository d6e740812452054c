"""PgStore: the MailStore interface (relay/store/api.py) over a PostgreSQL database that
several relay nodes may share.

Each call is one transaction on a pooled connection (pool.py); writes publish their change
events to this node's watchers after the commit and to the other nodes through pg_notify
(listener.py). The chatmail rules are the embedded store's (relay/store/rules.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import trio

from ..clock import ExpiryClock
from ..notify import Notifier
from ..rules import day_number
from ..types import (
    AccountCreation,
    AccountInfo,
    AuthRecord,
    Delivery,
    DeliveryOutcome,
    ExpiryResult,
    FlagMode,
    MailboxChange,
    MailboxEntry,
    MailboxSnapshot,
    MessageMeta,
    PushItem,
    QueueEntry,
    StoreError,
    ignore_change,
)
from . import accounts, expiry, mail, queries, queue, shared_files
from .delivery import deliver
from .leader import Leadership
from .listener import Listener
from .pool import Pool
from .tx import Tx

T = TypeVar("T")
ATTEMPTS = 3  # of an operation the database rolled back because of another node's


class PgStore:
    """The PostgreSQL store; satisfies relay.store.api.MailStore."""

    def __init__(
        self,
        config: Any,
        log: Any,
        pool: Pool,
        notifier: Notifier,
        listener: Listener,
        leadership: Leadership,
        clock: Callable[[], float],
        expiry_clock: ExpiryClock,
    ) -> None:
        self.config = config  # replace on reload; read per decision
        self.log = log
        self.node = listener.node  # this store instance among those sharing the database
        self.listener = listener
        self.on_queue_kick: Callable[[], None] = lambda: None  # set by the outbound worker
        listener.on_kick = lambda: self.on_queue_kick()
        self._leadership = leadership
        self._pool = pool
        self._notifier = notifier
        self._clock = clock
        self._expiry_clock = expiry_clock
        self._problem = ""
        self._clock_waiting_logged = False
        self._acme_leadership: shared_files.Leadership | None = None
        self._acme_lock = trio.Lock()

    async def _run(self, fn: Callable[..., T], **kwargs: Any) -> T:
        """fn(tx, **kwargs) in one transaction; its events go out once it committed. fn may run
        more than once (a deadlock between nodes is retried), so what it calls back must be
        pure, as MailStore already asks of update_metadata's and Delivery's callbacks."""
        now, config, node = self._clock(), self.config, self.node

        def in_transaction(conn: psycopg.Connection) -> tuple[T, Tx]:
            tx = Tx(conn, now, config, node)
            result = fn(tx, **kwargs)
            tx.send_events()
            return result, tx

        for attempt in range(1, ATTEMPTS + 1):
            try:
                result, tx = await self._pool.run(in_transaction)
                break
            except psycopg.errors.TransactionRollback:  # a deadlock: run it again
                if attempt == ATTEMPTS:
                    raise
            except psycopg.OperationalError as e:
                self._problem = f"database: {e}".strip()
                raise
        self._problem = ""
        for addr, change in tx.events:
            self._notifier.publish(addr, change)
        return result

    def today(self) -> int:
        return day_number(self._clock())

    def storage_full(self) -> bool:
        return False  # the database server keeps its own disk; a full one fails the writes

    def storage_problems(self) -> list[str]:
        return [self._problem] if self._problem else []

    # -- account primitives -----------------------------------------------------------------

    async def account_auth(self, addr: str) -> AuthRecord:
        return await self._run(queries.auth_record, addr=addr.lower())

    async def add_account(self, addr: str, pwhash: str) -> AccountCreation:
        return await self._run(accounts.create_account, addr=addr.lower(), pwhash=pwhash)

    async def touch_login(self, addr: str) -> None:
        addr = addr.lower()
        record = await self.account_auth(addr)
        if record.pwhash is None or record.login_day >= self.today():
            return
        try:
            await self._run(accounts.touch_login, addr=addr)
        except (StoreError, psycopg.Error) as e:
            self.log.warning("store_login_touch_failed", error=str(e))

    async def account_exists(self, addr: str) -> bool:
        return await self._run(queries.account_exists, addr=addr.lower())

    async def account_count(self) -> int:
        return await self._run(queries.account_count)

    async def export_accounts(self) -> list[dict[str, str]]:
        rows = await self._run(queries.account_hashes)
        return [{"addr": addr, "pwhash": pwhash} for addr, pwhash in rows]

    async def import_accounts(self, accounts: Sequence[dict[str, str]]) -> int:
        created = 0
        for account in accounts:
            created += await self.add_account(account["addr"], account["pwhash"]) == "created"
        return created

    async def delete_account(self, addr: str) -> None:
        await self._run(accounts.delete_account, addr=addr.lower())

    async def list_accounts(self) -> list[AccountInfo]:
        return await self._run(queries.account_list)

    async def block(self, addr: str) -> None:
        await self._run(accounts.block, addr=addr.lower())

    async def unblock(self, addr: str) -> None:
        await self._run(accounts.unblock, addr=addr.lower())

    async def is_blocked(self, addr: str) -> bool:
        return await self._run(queries.is_blocked, addr=addr.lower())

    async def blocked_addresses(self) -> list[str]:
        return await self._run(queries.blocked_addresses)

    # -- delivery ---------------------------------------------------------------------------

    async def commit_delivery(self, delivery: Delivery) -> DeliveryOutcome:
        return await self._run(deliver, delivery=delivery)

    async def append(
        self,
        addr: str,
        mailbox: str,
        data: bytes,
        *,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> tuple[int, int]:
        date = None if internal_date is None else int(internal_date.timestamp())
        return await self._run(
            mail.append, addr=addr.lower(), mailbox=mailbox, data=data, flags=list(flags), date=date
        )

    # -- mailboxes --------------------------------------------------------------------------

    async def list_mailboxes(self, addr: str) -> list[MailboxEntry]:
        return await self._run(queries.list_mailboxes, addr=addr.lower())

    async def create_mailbox(self, addr: str, name: str) -> None:
        await self._run(mail.create_mailbox, addr=addr.lower(), name=name)

    async def delete_mailbox(self, addr: str, name: str) -> None:
        await self._run(mail.delete_mailbox, addr=addr.lower(), name=name)

    async def rename_mailbox(self, addr: str, old: str, new: str) -> None:
        await self._run(mail.rename_mailbox, addr=addr.lower(), old=old, new=new)

    async def subscribe(self, addr: str, name: str, on: bool) -> None:
        await self._run(mail.subscribe, addr=addr.lower(), name=name, on=on)

    async def snapshot(self, addr: str, mailbox: str) -> MailboxSnapshot:
        return await self._run(queries.snapshot, addr=addr.lower(), name=mailbox)

    async def read(self, addr: str, mailbox: str, uid: int) -> bytes:
        return await self._run(queries.read, addr=addr.lower(), name=mailbox, uid=uid)

    async def set_flags(
        self, addr: str, mailbox: str, uids: Sequence[int], flags: Iterable[str], mode: FlagMode
    ) -> list[MessageMeta]:
        if mode not in ("add", "remove", "replace"):
            raise ValueError(f"bad flag mode {mode!r}")
        return await self._run(
            mail.set_flags,
            addr=addr.lower(),
            mailbox=mailbox,
            uids=list(uids),
            flags=list(flags),
            mode=mode,
        )

    async def expunge(self, addr: str, mailbox: str, uids: Sequence[int] | None) -> list[int]:
        uid_list = None if uids is None else list(uids)
        return await self._run(mail.expunge, addr=addr.lower(), mailbox=mailbox, uids=uid_list)

    async def copy(
        self, addr: str, src: str, uids: Sequence[int], dst: str
    ) -> list[tuple[int, int]]:
        return await self._run(mail.copy, addr=addr.lower(), src=src, uids=list(uids), dst=dst)

    async def move(
        self, addr: str, src: str, uids: Sequence[int], dst: str
    ) -> list[tuple[int, int]]:
        fn = partial(mail.copy, move=True)
        return await self._run(fn, addr=addr.lower(), src=src, uids=list(uids), dst=dst)

    def watch(
        self, addr: str, on_change: Callable[[], None] = ignore_change
    ) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[MailboxChange]]:
        """Change events of addr's mailboxes from every node, each sent after its commit."""
        return self._notifier.watch(addr.lower(), on_change)

    # -- metadata, quota --------------------------------------------------------------------

    async def get_metadata(self, addr: str, key: str) -> str | None:
        return await self._run(queries.get_metadata, addr=addr.lower(), key=key)

    async def set_metadata(self, addr: str, key: str, value: str | None) -> None:
        await self.update_metadata(addr, key, lambda _old: value)

    async def update_metadata(
        self, addr: str, key: str, change: Callable[[str | None], str | None]
    ) -> str | None:
        return await self._run(accounts.update_metadata, addr=addr.lower(), key=key, change=change)

    async def quota_usage(self, addr: str) -> int:
        return await self._run(queries.quota_usage, addr=addr.lower())

    # -- outbound queue ---------------------------------------------------------------------

    async def enqueue(self, sender: str, recipients: list[str], data: bytes) -> str:
        return await self._run(queue.enqueue, sender=sender, recipients=list(recipients), data=data)

    async def queue_list(self) -> list[QueueEntry]:
        return await self._run(queue.queue_list)

    async def queue_remove(self, id: str, recipients: list[str] | None = None) -> None:
        await self._run(queue.queue_remove, qid=id, recipients=recipients)

    async def queue_update(
        self,
        id: str,
        *,
        attempts: int | None = None,
        next_attempt: datetime | None = None,
        last_error: str | None = None,
    ) -> None:
        at = None if next_attempt is None else int(next_attempt.timestamp())
        await self._run(
            queue.queue_update, qid=id, attempts=attempts, next_attempt=at, last_error=last_error
        )

    async def queue_read(self, id: str) -> bytes:
        return await self._run(queue.queue_read, qid=id)

    async def queue_kick(self) -> None:
        await self._run(queue.kick)

    async def queue_claim(self, id: str, seconds: float) -> bool:
        return await self._run(queue.queue_claim, qid=id, seconds=seconds)

    # -- push notification items ------------------------------------------------------------

    async def push_pending(
        self, key: str, live_tokens: Callable[[str | None], list[str]]
    ) -> list[PushItem]:
        return await self._run(queue.push_pending, key=key, live_tokens=live_tokens)

    async def push_done(self, ids: Sequence[str]) -> None:
        await self._run(queue.push_done, ids=list(ids))

    # -- expiry -----------------------------------------------------------------------------

    async def expire(self) -> ExpiryResult:
        """One expiry pass, if this node is the expiry leader (leader.py); the others' passes
        do nothing."""
        now = self._expiry_clock.now()
        if now is None:
            if not self._clock_waiting_logged:
                self.log.warning("expiry-waiting-for-clock")
                self._clock_waiting_logged = True
            return ExpiryResult()
        if not await trio.to_thread.run_sync(self._leadership.check):
            return ExpiryResult()
        result = await self._run(expiry.expire, now=now)
        if result.accounts or result.messages or result.clamped:
            self.log.info(
                "store_expired",
                accounts=result.accounts,
                messages=result.messages,
                clamped=result.clamped,
            )
        return result

    async def expiry_timer(self, interval: float) -> None:
        while True:
            await self.expire()
            await trio.sleep(interval)

    # -- files the nodes share (shared_files.py) ----------------------------------------------

    async def sync_shared_files(self, data_dir: Path, names: Sequence[str]) -> list[str]:
        """Make the data dir hold the cluster's copy of each file (the first node's wins)."""
        return await shared_files.sync(self._pool, data_dir, list(names))

    async def shared_file(self, name: str) -> bytes | None:
        return await self._pool.run(shared_files.fetch, name)

    async def put_shared_file(self, name: str, content: bytes) -> None:
        await self._pool.run(shared_files.put, name, content)

    async def delete_shared_file(self, name: str) -> None:
        await self._pool.run(shared_files.delete, name)

    async def acme_leader(self) -> bool:
        """Whether this node is the one that talks to the ACME CA (see shared_files.Leadership);
        raises psycopg.Error while the database is unreachable."""
        if self._acme_leadership is None:
            settings = self.config.store
            self._acme_leadership = shared_files.Leadership(
                settings.dsn, settings.statement_timeout
            )
        async with self._acme_lock:
            return await trio.to_thread.run_sync(self._acme_leadership.check)

    async def close_leadership(self) -> None:
        if self._acme_leadership is not None:
            async with self._acme_lock:
                await trio.to_thread.run_sync(self._acme_leadership.close)
