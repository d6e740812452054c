from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from relay.app import App
from relay.config import Config
from relay.log import Logger
from relay.ratelimit import AuthThrottle
from relay.store import open_store
from relay.tls import TLSManager
from tests.store.helpers import Clock, config_for, store_config

OpenApp = Callable[..., AbstractAsyncContextManager[App]]


@asynccontextmanager
async def open_app(config: Config, clock: Clock | None = None) -> AsyncIterator[App]:
    """An App around a real store, as `relay serve` builds it, without the listeners. Failed
    logins cost no time here: the throttle has its own tests."""
    log = Logger(level="error")
    clock = clock or Clock()
    async with open_store(config, log, **clock.store_clocks(), expiry_interval=None) as store:
        app = App(config=config, store=store, tls=TLSManager(config), log=log)
        app.auth_throttle = AuthThrottle(base_delay=0, lockout_after=1000)
        yield app


@pytest.fixture
def config(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Config:
    return config_for(backend, store_config(tmp_path / "data"), request)


@pytest.fixture
async def app(config: Config) -> AsyncIterator[App]:
    async with open_app(config) as app:
        yield app
