"""The PostgreSQL store: several relay nodes share one database (config [store] backend =
"postgresql"). psycopg is an optional dependency (pip install '.[postgresql]')."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ..clock import ExpiryClock, clock_confirmed
from ..notify import Notifier
from . import schema
from .leader import Leadership
from .listener import Listener
from .pool import Pool
from .store import PgStore

EXPIRY_INTERVAL = 3600.0

__all__ = ["PgStore", "open_pg_store"]


def instance_name(node_name: str) -> str:
    """This store instance's name among the nodes: the configured node name (or the hostname),
    made unique per process and opening so that two of them never take each other's leases."""
    return f"{node_name or socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


@asynccontextmanager
async def open_pg_store(
    config: Any,
    log: Any,
    *,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    clock_confirmed: Callable[[], bool] = clock_confirmed,
    expiry_interval: float | None = EXPIRY_INTERVAL,
) -> AsyncIterator[PgStore]:
    """Connect to config.store.dsn (at the schema version this relay knows: `relay db
    upgrade`), listen for the other nodes' changes, and run the expiry timer (whose passes
    do something on the expiry leader only)."""
    settings = config.store
    pool = Pool(settings.dsn, settings.pool_size, settings.statement_timeout)
    leadership = Leadership(settings.dsn, settings.statement_timeout)
    try:
        await pool.run(schema.check)
        notifier = Notifier()
        node = instance_name(settings.node_name)
        listener = Listener(settings.dsn, node, notifier, log)
        expiry_clock = ExpiryClock(clock, clock_confirmed, monotonic)
        store = PgStore(config, log, pool, notifier, listener, leadership, clock, expiry_clock)
        async with trio.open_nursery() as nursery:
            await nursery.start(listener.run)
            if expiry_interval is not None:
                nursery.start_soon(store.expiry_timer, expiry_interval)
            try:
                yield store
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await store.close_leadership()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(leadership.close)
            await pool.aclose()
