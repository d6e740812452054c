"""open_store: the store the config's [store] section asks for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .api import MailStore
from .store import open_embedded_store


@asynccontextmanager
async def open_store(config: Any, log: Any, **options: Any) -> AsyncIterator[MailStore]:
    """The embedded store in config.data_dir, or the PostgreSQL store at config.store.dsn.

    options: the clocks (clock, monotonic, clock_confirmed) and expiry_interval both take;
    segment_size is the embedded store's only."""
    if config.store.backend == "postgresql":
        from .postgres import open_pg_store  # psycopg is an optional dependency

        options.pop("segment_size", None)
        async with open_pg_store(config, log, **options) as store:
            yield store
    else:
        async with open_embedded_store(config, log, **options) as store:
            yield store
