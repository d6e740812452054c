from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.config import Config
from relay.log import Logger
from relay.store import Store, open_store
from tests.helpers import make_account
from tests.store.helpers import Clock, addr, store_config

PASSWORD = "correct-horse-9"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return store_config(tmp_path / "data")


@pytest.fixture
async def store(config: Config, clock: Clock) -> AsyncIterator[Store]:
    async with open_store(
        config, Logger(level="error"), **clock.store_clocks(), expiry_interval=None
    ) as s:
        yield s


@pytest.fixture
async def alice(store: Store) -> str:
    a = addr("alice0001")
    assert await make_account(store, a, PASSWORD)
    return a
