"""Shared fixtures: a real relay on 127.0.0.1 with free ports, in-process or as a subprocess."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from relay.config import Config
from relay.log import Logger
from tests.helpers import (
    RelayProcess,
    RelayServer,
    make_config,
    start_relay_process,
    stop_relay_process,
)


@pytest.fixture
def relay_config(tmp_path: Path) -> Config:
    """The config `relay_server` uses; override this fixture to change it."""
    return make_config(tmp_path / "data")


@pytest.fixture
async def relay_server(relay_config: Config) -> AsyncIterator[RelayServer]:
    """A relay serving every listener in this test's trio loop."""
    from relay.server import serve

    async with trio.open_nursery() as nursery:
        listening = await nursery.start(
            lambda task_status: serve(
                relay_config, log=Logger(level="warning"), task_status=task_status
            )
        )
        yield RelayServer(config=relay_config, app=listening.app)
        nursery.cancel_scope.cancel()


@pytest.fixture
def relay_process(tmp_path: Path) -> Iterator[RelayProcess]:
    """A relay in its own process (for signals, restarts and crash tests)."""
    config = make_config(tmp_path / "data")
    relay = start_relay_process(config, tmp_path / "relay.toml")
    yield relay
    stop_relay_process(relay)
