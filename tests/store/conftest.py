"""Store fixtures, over both backends: every test taking `config`, `store` or `alice` runs
against the embedded store and against PostgreSQL (tests/pg.py), unless it is marked
`embedded_only` (the segment log, crash recovery: what only the embedded store has)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.config import Config
from relay.log import Logger
from relay.store import MailStore, open_store
from tests.helpers import make_account
from tests.store.helpers import Clock, addr, on_postgresql, store_config

PASSWORD = "correct-horse-9"
BACKENDS = ("embedded", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "embedded_only: a store test of what only the embedded store has"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("embedded_only")
        metafunc.parametrize("backend", BACKENDS[:1] if only else BACKENDS)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Config:
    config = store_config(tmp_path / "data")
    if backend == "embedded":
        return config
    return on_postgresql(config, request.getfixturevalue("pg_dsn"))


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
