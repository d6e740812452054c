"""A relay core for the hwctl tests: the real store and App, without the network listeners."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from relay.app import App
from relay.config import Config
from relay.log import Logger
from relay.store import open_store
from relay.tls import TLSManager


@asynccontextmanager
async def running_app(tmp_path: Path, domain: str = "127.0.0.1") -> AsyncIterator[App]:
    config = Config.embedded_default(tmp_path / "data")
    config = dataclasses.replace(config, mail_domain=domain)
    config.data_dir.mkdir(parents=True)
    log = Logger(level="warning")
    async with open_store(config, log) as store:
        yield App(config=config, store=store, tls=TLSManager(config), log=log)
