"""Fixtures for federation tests: a sending relay's App with a real store, and its worker."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from relay.app import App
from relay.federation.outbound import Outbound
from relay.federation.settings import Federation
from relay.log import Logger
from relay.store import open_store
from relay.tls import TLSManager
from tests.helpers import free_ports, make_config

SENDER_IP = "127.0.0.2"
PEER_IP = "127.0.0.3"


class FedConfig:
    """A Config plus a [federation] table, until the config loader has that table itself."""

    def __init__(self, config: Any, federation: Federation):
        self._config = config
        self.federation = federation

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)


def with_federation(config: Any, **keys: Any) -> Any:
    base = getattr(config, "_config", config)
    fed = dataclasses.replace(getattr(config, "federation", None) or Federation(), **keys)
    if any(f.name == "federation" for f in dataclasses.fields(base)):
        return dataclasses.replace(base, federation=fed)
    return FedConfig(base, fed)


def closed_port(host: str = PEER_IP) -> int:
    return free_ports(1, host)[0]


def configure(app: App, **keys: Any) -> None:
    app.config = with_federation(app.config, **keys)
    app.store.config = app.config


@asynccontextmanager
async def open_app(config: Any) -> AsyncIterator[App]:
    """An App with a real store and no listeners."""
    log = Logger(level="warning")
    async with open_store(config, log, expiry_interval=None) as store:
        yield App(config=config, store=store, tls=TLSManager(config), log=log)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    config = with_federation(make_config(tmp_path / "sender", SENDER_IP), retry_initial=1)
    async with open_app(config) as app:
        yield app


@pytest.fixture
async def worker(app: App) -> AsyncIterator[Outbound]:
    async with trio.open_nursery() as nursery:
        outbound = Outbound(app)
        await nursery.start(outbound.run)
        yield outbound
        nursery.cancel_scope.cancel()


async def wait_until(predicate, timeout: float = 10.0, step: float = 0.02) -> None:
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(step)


async def queue_empty(app: App) -> bool:
    return not await app.store.queue_list()


async def inbox(app: App, addr: str) -> list[bytes]:
    snap = await app.store.snapshot(addr, "INBOX")
    return [await app.store.read(addr, "INBOX", m.uid) for m in snap.messages]
