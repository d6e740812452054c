"""The single writer task: group commit of everything that is pending.

Loop: take every queued operation, plan them all into one batch of log records, write the batch
with ONE fdatasync (outside the database lock, so reads continue), apply the records to the index
in one transaction, then wake every waiter and publish the change events. Planning and applying
run on the event loop (see Database), the write and its sync in a worker thread.
Operations that arrive during a sync simply form the next batch, so the batch size follows the
load without any timer.

A failed write never acknowledges anything: a full disk fails the batch with StorageFull (and
gives the space reserve back, so deletions can still run), any other I/O error with
StoreError, and `problem` says what went wrong until a batch succeeds again. Applying a
durable batch to the index is retried for a while (a full disk, a transient error) before the
writer gives up, which ends the store and lets recovery replay the batch at the next start.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from . import index
from .notify import Notifier
from .planner import Planner
from .segments import Location, SegmentLog
from .space import Space, is_disk_full
from .types import StorageFull, StoreError

APPLY_RETRY_FOR = 30.0  # seconds an index update of a durable batch is retried


class Database:
    """The one SQLite connection, used by one task at a time.

    `query()` runs on the event loop: point reads (an account, a mailbox snapshot, a message's
    place) and the writer's planning and index updates. They are Python code that holds the
    GIL wherever it runs, and in a worker thread each statement would wait again for the GIL
    while the event loop is busy (up to the 5 ms switch interval each time), so a batch there
    took many times its CPU cost in wall time. With locking_mode=EXCLUSIVE SQLite's own page
    cache stays valid between transactions, and a read costs tens of microseconds.
    `run()` is for work that may take long (listings, expiry, WAL checkpoints): in a worker
    thread, with the event loop going on meanwhile."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._lock = trio.Lock()
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        self._wal = Path(f"{path}-wal")
        self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]

    async def query(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not self._lock.locked():  # fn does not await: nothing else can take it meanwhile
            return fn(self.conn, *args)
        async with self._lock:  # a worker thread has it (run())
            return fn(self.conn, *args)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        async with self._lock:
            return await trio.to_thread.run_sync(fn, self.conn, *args)

    async def checkpoint_if_due(self) -> None:
        if index.checkpoint_due(self._wal, self._page_size):
            await self.run(index.checkpoint)


@dataclass(eq=False)
class _Op:
    fn: Callable[..., Any]
    exclusive: bool = False  # runs alone between batches with (conn, log) instead of a Planner
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


class Writer:
    def __init__(
        self,
        db: Database,
        log: SegmentLog,
        notifier: Notifier,
        *,
        lsn: int,
        clock: Callable[[], float],
        config: Callable[[], Any],
        space: Space,
    ) -> None:
        self.db = db
        self.space = space
        self.problem: str | None = None  # the last write failure, until a batch succeeds
        self.log = log
        self.notifier = notifier
        self.lsn = lsn
        self.clock = clock
        self.config = config
        self.batches = 0  # for tests and benchmarks: how many group commits were written
        self._send, self._recv = trio.open_memory_channel[_Op](math.inf)

    async def submit(self, fn: Callable[[Planner], Any]) -> Any:
        """Run fn in the next batch; return its result once the batch is durable."""
        return await self._wait(_Op(fn))

    async def exclusive(self, fn: Callable[[sqlite3.Connection, SegmentLog], Any]) -> Any:
        """Run fn(conn, log) in the database thread while no batch is being written."""
        return await self._wait(_Op(fn, exclusive=True))

    async def _wait(self, op: _Op) -> Any:
        self._send.send_nowait(op)
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            ops = [await self._recv.receive()]
            while True:
                try:
                    ops.append(self._recv.receive_nowait())
                except trio.WouldBlock:
                    break
            # Shielded: a batch that started is finished even during shutdown, so every
            # waiter learns whether its operation is durable.
            with trio.CancelScope(shield=True):
                batch = [op for op in ops if not op.exclusive]
                if batch:
                    await self._commit(batch)
                for op in ops:
                    if op.exclusive:
                        await self._run_exclusive(op)

    async def _run_exclusive(self, op: _Op) -> None:
        try:
            op.result = await self.db.run(op.fn, self.log)
        except Exception as e:
            op.error = e
        op.done.set()

    async def _commit(self, ops: list[_Op]) -> None:
        now = self.clock()
        try:
            planner = await self.db.query(self._plan, ops, now)
        except OSError as e:  # e.g. no space left to start a new segment
            failure = self._write_failed(e)
            for op in ops:
                op.error = failure
                op.done.set()
            return
        if planner.records:
            batch = planner.batch
            batch.seal()
            try:
                await trio.to_thread.run_sync(self.log.write, batch)
            except OSError as e:
                failure = self._write_failed(e)
                for op in ops:
                    if op.error is None:
                        op.error = failure
                planner.events.clear()
            else:
                await self._apply(planner.records, batch.seg, batch.lsn)
                # A failed checkpoint (a full disk) leaves a longer WAL; tried after each batch.
                with contextlib.suppress(sqlite3.Error, OSError):
                    await self.db.checkpoint_if_due()
                self.lsn = batch.lsn
                self.batches += 1
                self.problem = None
        for op in ops:
            op.done.set()
        for addr, change in planner.events:
            self.notifier.publish(addr, change)

    def _write_failed(self, error: OSError) -> StoreError:
        if is_disk_full(error):
            self.space.release_reserve()
            return StorageFull(f"storage full: {error}")
        self.problem = f"storage write failed: {error.strerror or error}"
        return StoreError(self.problem)

    async def _apply(self, records: list[Any], seg: int, lsn: int) -> None:
        """Apply a durable batch to the index; its waiters hear nothing until it is applied.
        A failure that outlasts APPLY_RETRY_FOR leaves the log ahead of the index: raised, it
        ends the store, and recovery replays the batch at the next open."""
        give_up = trio.current_time() + APPLY_RETRY_FOR
        pause = 0.05
        while True:
            try:
                await self.db.query(_apply_batch, records, seg, self.log.end, lsn)
                return
            except (sqlite3.Error, OSError) as e:
                self.problem = f"index update failed: {e}"
                self.space.release_reserve()  # SQLite may need room for its journal
                if trio.current_time() + pause > give_up:
                    raise
            await trio.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _plan(self, conn: sqlite3.Connection, ops: list[_Op], now: float) -> Planner:
        batch = self.log.new_batch(self.lsn, int(now // 86400))
        planner = Planner(conn, batch, now, self.config(), self.space)
        conn.execute("BEGIN")
        try:
            for op in ops:
                mark = planner.mark()
                conn.execute("SAVEPOINT op")
                try:
                    op.result = op.fn(planner)
                except Exception as e:  # this op fails alone; the rest of the batch goes on
                    conn.execute("ROLLBACK TO op")
                    planner.reset(mark)
                    op.error = e
                conn.execute("RELEASE op")
        finally:
            conn.execute("ROLLBACK")
        return planner


def _apply_batch(
    conn: sqlite3.Connection,
    records: list[tuple[dict[str, Any], Location | None]],
    seg: int,
    end: int,
    lsn: int,
) -> None:
    conn.execute("BEGIN")
    try:
        for rec, loc in records:
            index.apply(conn, rec, loc)
        index.set_meta(conn, "lsn", lsn)
        index.set_meta(conn, "seg", seg)
        index.set_meta(conn, "end", end)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
