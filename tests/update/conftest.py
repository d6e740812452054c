"""Fixtures of the update tests: a real RAUC system (tests/update/raucsys.py) and a relay whose
`[update]` section points at it."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from relay.config import Config, Update
from tests.helpers import make_config
from tests.update.fileserver import FileServer
from tests.update.raucsys import RaucSystem, start


@pytest.fixture
def rauc_system(tmp_path: Path) -> Iterator[RaucSystem]:
    system = start(tmp_path / "rauc")
    try:
        yield system
    finally:
        system.stop()


@pytest.fixture
def update_section(rauc_system: RaucSystem) -> Update:
    """What a test's relay runs with; a test overrides it to add a URL."""
    return Update(rauc=str(rauc_system.rauc), reboot_command=f"{rauc_system.reboot} now")


@pytest.fixture
def relay_config(tmp_path: Path, update_section: Update) -> Config:
    return dataclasses.replace(make_config(tmp_path / "data"), update=update_section)


@pytest.fixture
async def file_server(tmp_path: Path) -> AsyncIterator[FileServer]:
    """The local HTTPS server of manifests and bundles (tests/update/fileserver.py)."""
    server = FileServer(tmp_path / "web")
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()
