"""A bounded pool of synchronous psycopg connections, each used in a worker thread.

psycopg's async layer is asyncio-only, so queries run on sync connections through
trio.to_thread.run_sync, at most `size` at once. Every call is one transaction: it commits when
the function returns and rolls back when it raises.

Cancel-safety: a cancelled trio task does not stop its thread. run() therefore waits for the
thread to end (the default of to_thread.run_sync), and statement_timeout bounds that wait, so a
connection goes back to the pool only once its transaction has ended. A connection that is not
idle afterwards (broken, or in an unknown state) is closed instead of reused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import trio
from psycopg import pq

T = TypeVar("T")


def connect(dsn: str, statement_timeout: float, *, autocommit: bool = False) -> psycopg.Connection:
    """A connection with the relay's session settings (UTC, the statement timeout)."""
    ms = max(1, int(statement_timeout * 1000))
    options = f"-c statement_timeout={ms} -c TimeZone=UTC"
    return psycopg.connect(dsn, options=options, autocommit=autocommit)


class Pool:
    def __init__(self, dsn: str, size: int, statement_timeout: float) -> None:
        self.dsn = dsn
        self.statement_timeout = statement_timeout
        self._limiter = trio.CapacityLimiter(size)
        self._idle: list[psycopg.Connection] = []
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(connection, *args) in a worker thread, inside one transaction."""
        async with self._limiter:
            if self._closed:
                raise trio.ClosedResourceError("the store is closed")
            conn = self._idle.pop() if self._idle else None
            return await trio.to_thread.run_sync(self._in_thread, conn, fn, args)

    def _in_thread(
        self, conn: psycopg.Connection | None, fn: Callable[..., T], args: tuple[Any, ...]
    ) -> T:
        if conn is None or conn.closed:
            conn = connect(self.dsn, self.statement_timeout)
        try:
            with conn.transaction():
                return fn(conn, *args)
        finally:
            self._give_back(conn)

    def _give_back(self, conn: psycopg.Connection) -> None:
        if self._closed or conn.closed or conn.info.transaction_status != pq.TransactionStatus.IDLE:
            conn.close()
        else:
            self._idle.append(conn)

    async def aclose(self) -> None:
        """Close every idle connection; calls still running close theirs when they end."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await trio.to_thread.run_sync(conn.close)
