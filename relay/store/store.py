"""The embedded store: the MailStore interface (relay/store/api.py) over the segment log and
the SQLite index.

Writes go to the single group-commit writer; reads go to the database thread; bodies are read
from the segment files in worker threads. The chatmail rules the operations apply live in
rules.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import trio

from . import expiry, ops_accounts, ops_delivery, ops_mail, ops_push, ops_queue, queries
from .clock import ExpiryClock, clock_confirmed
from .notify import Notifier
from .opening import close, lock_directory, recover
from .rules import day_number
from .segments import Location, SegmentLog
from .space import Space
from .types import (
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
    NoSuchMessage,
    PushItem,
    QueueEntry,
    StoreError,
    ignore_change,
)
from .writer import Database, Writer

SEGMENT_SIZE = 8 << 20
EXPIRY_INTERVAL = 3600.0
SPACE_CHECK = 2.0  # seconds: how soon mail deleted on a full disk gives its space back
DEAD_SEGMENTS_EVERY = 300.0  # seconds between unlinking emptied segments otherwise
# Bodies up to this size are read on the event loop: a chat message was just written and is in
# the page cache, and one pread costs less than a hop to a worker thread. Larger ones are read
# in a worker thread.
INLINE_READ = 64 * 1024


class Store:
    """The embedded store; satisfies relay.store.api.MailStore."""

    def __init__(
        self,
        config: Any,
        log: Any,
        db: Database,
        seglog: SegmentLog,
        writer: Writer,
        expiry_clock: ExpiryClock,
    ):
        self.config = config  # replace on reload; read per decision
        self.log = log
        self.on_queue_kick: Callable[[], None] = lambda: None  # nothing calls it here
        self._db = db
        self._seglog = seglog
        self._writer = writer
        self._notifier = writer.notifier
        self._space = writer.space
        self._expiry_clock = expiry_clock
        self._clock_waiting_logged = False

    def _now(self) -> float:
        return self._writer.clock()

    def today(self) -> int:
        """The store clock's day number (login days are counted in it)."""
        return day_number(self._now())

    def storage_full(self) -> bool:
        return self._space.low(self.config.accounts.min_free_disk_space)

    def storage_problems(self) -> list[str]:
        """What is wrong with the storage right now, for the status (display, admin)."""
        problems = ["data disk full"] if self.storage_full() else []
        if self._writer.problem:
            problems.append(self._writer.problem)
        return problems

    # -- account primitives -----------------------------------------------------------------

    async def account_auth(self, addr: str) -> AuthRecord:
        return await self._db.query(queries.auth_record, addr.lower())

    async def add_account(self, addr: str, pwhash: str) -> AccountCreation:
        """Create addr with an already computed password hash (and its INBOX). 'exists' when
        it is there already (a concurrent first login won), 'blocked' if it may never be."""
        fn = partial(ops_accounts.create_account, addr=addr.lower(), pwhash=pwhash)
        return await self._writer.submit(fn)

    async def touch_login(self, addr: str) -> None:
        """Record today as addr's last login (inactive accounts expire). At most one write a
        day; a failure is logged, not raised: it must never fail the login itself."""
        addr = addr.lower()
        record = await self.account_auth(addr)
        if record.pwhash is None or record.login_day >= self.today():
            return
        try:
            await self._writer.submit(partial(ops_accounts.touch_login, addr=addr))
        except StoreError as e:
            self.log.warning("store_login_touch_failed", error=str(e))

    async def account_exists(self, addr: str) -> bool:
        return await self._db.query(queries.account_exists, addr.lower())

    async def account_count(self) -> int:
        return await self._db.run(queries.account_count)

    async def export_accounts(self) -> list[dict[str, str]]:
        """Addresses with their password hashes, for an identity backup (never mail)."""
        rows = await self._db.run(queries.account_hashes)
        return [{"addr": addr, "pwhash": pwhash} for addr, pwhash in rows]

    async def import_accounts(self, accounts: Sequence[dict[str, str]]) -> int:
        """Re-create backed-up accounts; existing and blocked addresses are left alone."""
        created = 0
        for account in accounts:
            created += await self.add_account(account["addr"], account["pwhash"]) == "created"
        return created

    async def delete_account(self, addr: str) -> None:
        addr = addr.lower()
        await self._writer.submit(partial(ops_accounts.delete_account, addr=addr))

    async def block(self, addr: str) -> None:
        """Remove the account (if any) and refuse to ever create it again."""
        addr = addr.lower()
        await self._writer.submit(partial(ops_accounts.block, addr=addr))

    async def unblock(self, addr: str) -> None:
        addr = addr.lower()
        await self._writer.submit(partial(ops_accounts.unblock, addr=addr))

    async def is_blocked(self, addr: str) -> bool:
        return await self._db.query(queries.is_blocked, addr.lower())

    async def blocked_addresses(self) -> list[str]:
        return await self._db.run(queries.blocked_addresses)

    async def list_accounts(self) -> list[AccountInfo]:
        return await self._db.run(queries.account_list)

    # -- delivery ---------------------------------------------------------------------------

    async def commit_delivery(self, delivery: Delivery) -> DeliveryOutcome:
        """Store the local copies, queue the remote one and the report on failures, all in one
        operation: it returns once all of it is durable, or raises and none of it is.

        Local recipients without an account or over quota do not fail the operation: they are
        listed in outcome.failed (and the report callback builds what the sender is told)."""
        return await self._writer.submit(partial(ops_delivery.plan, delivery=delivery))

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
        fn = partial(
            ops_mail.append,
            addr=addr.lower(),
            mailbox=mailbox,
            data=data,
            flags=list(flags),
            date=date,
        )
        return await self._writer.submit(fn)

    # -- mailboxes --------------------------------------------------------------------------

    async def list_mailboxes(self, addr: str) -> list[MailboxEntry]:
        return await self._db.query(queries.list_mailboxes, addr.lower())

    async def create_mailbox(self, addr: str, name: str) -> None:
        await self._writer.submit(partial(ops_mail.create_mailbox, addr=addr.lower(), name=name))

    async def delete_mailbox(self, addr: str, name: str) -> None:
        await self._writer.submit(partial(ops_mail.delete_mailbox, addr=addr.lower(), name=name))

    async def rename_mailbox(self, addr: str, old: str, new: str) -> None:
        await self._writer.submit(
            partial(ops_mail.rename_mailbox, addr=addr.lower(), old=old, new=new)
        )

    async def subscribe(self, addr: str, name: str, on: bool) -> None:
        await self._writer.submit(partial(ops_mail.subscribe, addr=addr.lower(), name=name, on=on))

    async def snapshot(self, addr: str, mailbox: str) -> MailboxSnapshot:
        return await self._db.query(queries.snapshot, addr.lower(), mailbox)

    async def read(self, addr: str, mailbox: str, uid: int) -> bytes:
        loc = await self._db.query(queries.locate, addr.lower(), mailbox, uid)
        return await self._read_body(loc, f"{mailbox} uid {uid}")

    async def _read_body(self, loc: Location, what: str) -> bytes:
        try:
            if loc.size <= INLINE_READ:
                return self._seglog.read(loc)
            return await trio.to_thread.run_sync(self._seglog.read, loc)
        except FileNotFoundError:  # expunged and its segment dropped meanwhile
            raise NoSuchMessage(what) from None

    async def set_flags(
        self, addr: str, mailbox: str, uids: Sequence[int], flags: Iterable[str], mode: FlagMode
    ) -> list[MessageMeta]:
        if mode not in ("add", "remove", "replace"):
            raise ValueError(f"bad flag mode {mode!r}")
        fn = partial(
            ops_mail.set_flags,
            addr=addr.lower(),
            mailbox=mailbox,
            uids=list(uids),
            flags=list(flags),
            mode=mode,
        )
        return await self._writer.submit(fn)

    async def expunge(self, addr: str, mailbox: str, uids: Sequence[int] | None) -> list[int]:
        uid_list = None if uids is None else list(uids)
        return await self._writer.submit(
            partial(ops_mail.expunge, addr=addr.lower(), mailbox=mailbox, uids=uid_list)
        )

    async def copy(
        self, addr: str, src: str, uids: Sequence[int], dst: str
    ) -> list[tuple[int, int]]:
        return await self._writer.submit(
            partial(ops_mail.copy, addr=addr.lower(), src=src, uids=list(uids), dst=dst)
        )

    async def move(
        self, addr: str, src: str, uids: Sequence[int], dst: str
    ) -> list[tuple[int, int]]:
        fn = partial(ops_mail.copy, addr=addr.lower(), src=src, uids=list(uids), dst=dst, move=True)
        return await self._writer.submit(fn)

    def watch(
        self, addr: str, on_change: Callable[[], None] = ignore_change
    ) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[MailboxChange]]:
        """Change events of addr's mailboxes, each sent right after the change is durable."""
        return self._notifier.watch(addr.lower(), on_change)

    # -- metadata, quota --------------------------------------------------------------------

    async def get_metadata(self, addr: str, key: str) -> str | None:
        return await self._db.query(queries.get_metadata, addr.lower(), key)

    async def set_metadata(self, addr: str, key: str, value: str | None) -> None:
        await self._writer.submit(
            partial(ops_accounts.set_metadata, addr=addr.lower(), key=key, value=value)
        )

    async def update_metadata(
        self, addr: str, key: str, change: Callable[[str | None], str | None]
    ) -> str | None:
        """Atomic read-modify-write: change(old) runs in the database thread (keep it pure and
        quick) between the other writes, and its result is stored (None deletes). Returns the
        new value once it is durable."""
        fn = partial(ops_accounts.update_metadata, addr=addr.lower(), key=key, change=change)
        return await self._writer.submit(fn)

    async def quota_usage(self, addr: str) -> int:
        return await self._db.query(queries.quota_usage, addr.lower())

    # -- outbound queue ---------------------------------------------------------------------

    async def enqueue(self, sender: str, recipients: list[str], data: bytes) -> str:
        return await self._writer.submit(
            partial(ops_queue.enqueue, sender=sender, recipients=list(recipients), data=data)
        )

    async def queue_list(self) -> list[QueueEntry]:
        return await self._db.run(queries.queue_list)

    async def queue_remove(self, id: str, recipients: list[str] | None = None) -> None:
        await self._writer.submit(partial(ops_queue.queue_remove, qid=id, recipients=recipients))

    async def queue_update(
        self,
        id: str,
        *,
        attempts: int | None = None,
        next_attempt: datetime | None = None,
        last_error: str | None = None,
    ) -> None:
        at = None if next_attempt is None else int(next_attempt.timestamp())
        fn = partial(
            ops_queue.queue_update,
            qid=id,
            attempts=attempts,
            next_attempt=at,
            last_error=last_error,
        )
        await self._writer.submit(fn)

    async def queue_read(self, id: str) -> bytes:
        loc = await self._db.query(queries.queue_locate, id)
        return await self._read_body(loc, f"queue {id}")

    async def queue_kick(self) -> None:
        """One process alone on its files: no other node to tell."""

    async def queue_claim(self, id: str, seconds: float) -> bool:
        """Always yours: one process owns the embedded store (its directory is locked)."""
        return True

    # -- push notification items ------------------------------------------------------------

    async def push_pending(
        self, key: str, live_tokens: Callable[[str | None], list[str]]
    ) -> list[PushItem]:
        return await self._db.run(ops_push.pending, key, live_tokens)

    async def push_done(self, ids: Sequence[str]) -> None:
        await self._writer.submit(partial(ops_push.remove, ids=ids))

    # -- expiry -----------------------------------------------------------------------------

    async def expire(self) -> ExpiryResult:
        """One expiry pass (the timer calls this hourly): expired mail and inactive accounts go,
        then segments nothing points into are unlinked whole."""
        now = self._expiry_clock.now()
        if now is None:  # nothing is deleted by a clock that may be years off
            if not self._clock_waiting_logged:
                self.log.warning("expiry-waiting-for-clock")
                self._clock_waiting_logged = True
            return ExpiryResult()
        result = await self._writer.submit(partial(expiry.expire, now=now))
        result.segments = await self._drop_dead_segments()
        if result.accounts or result.messages or result.segments or result.clamped:
            self.log.info(
                "store_expired",
                accounts=result.accounts,
                messages=result.messages,
                segments=result.segments,
                clamped=result.clamped,
            )
        return result

    async def _drop_dead_segments(self) -> int:
        drop = partial(queries.drop_dead_segments, today=self.today())
        return await self._writer.exclusive(drop)

    async def _expiry_timer(self, interval: float) -> None:
        while True:
            await self.expire()
            await trio.sleep(interval)

    async def _space_keeper(self) -> None:
        """Unlink the segments that deletions emptied: within seconds while the disk is full,
        so acceptance resumes, every few minutes otherwise (mail that is fetched and deleted
        at once must not hold 8 MiB segments and their file descriptors until the hourly
        expiry); and keep the space reserve."""
        dropped_at = trio.current_time()
        while True:
            watermark = self.config.accounts.min_free_disk_space
            low = self._space.low(watermark)
            if low or trio.current_time() - dropped_at >= DEAD_SEGMENTS_EVERY:
                await self._drop_dead_segments()
                dropped_at = trio.current_time()
            if not low:
                await trio.to_thread.run_sync(self._space.keep_reserve, watermark)
            await trio.sleep(SPACE_CHECK)


@asynccontextmanager
async def open_embedded_store(
    config: Any,
    log: Any,
    *,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    clock_confirmed: Callable[[], bool] = clock_confirmed,
    segment_size: int = SEGMENT_SIZE,
    expiry_interval: float | None = EXPIRY_INTERVAL,
) -> AsyncIterator[Store]:
    """Open (recovering if needed) the store under config.data_dir/store and run its tasks.

    clock: "now" for stamps; monotonic and clock_confirmed: what expiry trusts of it
    (relay/store/clock.py); tests inject all three. expiry_interval None: no timer.
    """
    directory = Path(config.data_dir) / "store"
    lock = await trio.to_thread.run_sync(lock_directory, directory)
    space = Space(directory)
    if space.low(config.accounts.min_free_disk_space) and space.release_reserve():
        log.warning("store-space-reserve-released", free=space.free())  # recovery needs room
    try:
        db, seglog, lsn, replayed = await trio.to_thread.run_sync(recover, directory, segment_size)
    except BaseException:
        os.close(lock)
        raise
    if replayed:
        log.info("store_recovered", batches=replayed)
    writer = Writer(
        db, seglog, Notifier(), lsn=lsn, clock=clock, config=lambda: store.config, space=space
    )
    store = Store(config, log, db, seglog, writer, ExpiryClock(clock, clock_confirmed, monotonic))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            if expiry_interval is not None:
                nursery.start_soon(store._expiry_timer, expiry_interval)
            nursery.start_soon(store._space_keeper)
            try:
                yield store
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):  # shutdown is a cancellation: close regardless
            await trio.to_thread.run_sync(close, db, seglog, lock)
