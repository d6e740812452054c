"""Store fixtures, over both backends: every test taking `config`, `store` or `alice` runs
against the embedded store and against PostgreSQL (tests/pg.py), unless it is marked
`embedded_only` (see `backend` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.config import Config
from relay.log import Logger
from relay.store import MailStore, open_store
from tests.helpers import make_account
from tests.store.helpers import Clock, addr, config_for, store_config

PASSWORD = "correct-horse-9"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Config:
    return config_for(backend, store_config(tmp_path / "data"), request)


@pytest.fixture
async def store(config: Config, clock: Clock) -> AsyncIterator[MailStore]:
    async with open_store(
        config, Logger(level="error"), **clock.store_clocks(), expiry_interval=None
    ) as s:
        yield s


@pytest.fixture
async def alice(store: MailStore) -> str:
    a = addr("alice0001")
    assert await make_account(store, a, PASSWORD)
    return a
