"""Fixtures for end-to-end tests: a relay process in LAN mode and real Delta Chat profiles.

Each test gets its own relay on 127.0.0.1 with free ports and its own deltachat-rpc-server with
an accounts directory under tmp_path; both are stopped when the test ends, whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relay.config import Config
from tests.e2e.dclient import DCClient, LiveRelay, Profile, rpc_server_path
from tests.helpers import make_config


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "relay_config(**sections): replace config sections for this test's relay"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A hung client must fail the test, not the whole run: each test has its own backstop.
    for item in items:
        if "/e2e/" in str(item.path) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(240))


@pytest.fixture
def relay_config(tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    """LAN mode on 127.0.0.1 with free ports; `@pytest.mark.relay_config(...)` changes sections."""
    marker = request.node.get_closest_marker("relay_config")
    return make_config(tmp_path / "relay-data", **(marker.kwargs if marker else {}))


@pytest.fixture
def relay(relay_config: Config, tmp_path: Path) -> Iterator[LiveRelay]:
    live = LiveRelay(relay_config, tmp_path)
    try:
        live.start()
        yield live
    finally:
        live.stop()
        print(f"--- relay log (tail) ---\n{live.log_tail()}")  # shown when the test fails


@pytest.fixture
def dc(tmp_path: Path) -> Iterator[DCClient]:
    server = rpc_server_path()
    if server is None:
        pytest.skip("deltachat-rpc-server is not installed (pip install -e '.[test]')")
    client = DCClient(tmp_path / "accounts", server, tmp_path / "rpc-server.log")
    try:
        client.start()
        yield client
    finally:
        client.close()


@pytest.fixture
def make_profile(relay: LiveRelay, dc: DCClient) -> Callable[[str], Profile]:
    """make_profile("alice"): a configured profile, online and idling in INBOX."""
    return lambda name: dc.add_profile(name, relay)


@pytest.fixture
def pair(make_profile: Callable[[str], Profile]) -> tuple[Profile, Profile]:
    """Alice and Bob, verified to each other by SecureJoin."""
    alice, bob = make_profile("alice"), make_profile("bob")
    bob.securejoin(alice)
    return alice, bob
