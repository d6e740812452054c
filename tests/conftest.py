"""Shared fixtures (a real relay on 127.0.0.1 with free ports, in the test's trio loop) and the
CI rule for skips."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import pytest

from relay.config import Config
from tests.helpers import RelayServer, in_ci, make_config, serving

pytest_plugins = ["tests.pg"]  # the pg_server and pg_dsn fixtures
STORE_BACKENDS = ("embedded", "postgresql")

# The only tests that may be skipped in CI (CI=1, set by .ci/run), each with the reason. Any other
# skip there is reported as a failure: a test that silently did not run has not passed.
ALLOWED_SKIPS = {
    "tests/image/test_buildroot_tree.py::test_buildroot_dir_is_the_pinned_release": (
        "needs BUILDROOT_DIR, a Buildroot source tree: a download CI does not make"
    ),
    "tests/image/test_buildroot_tree.py::test_make_defconfig_applies_every_line": (
        "needs BUILDROOT_DIR, a Buildroot source tree: a download CI does not make"
    ),
    "tests/image/test_buildroot_tree.py::test_buildroot_check_package_accepts_the_recipes": (
        "needs BUILDROOT_DIR, a Buildroot source tree: a download CI does not make"
    ),
    "tests/conformance/test_relay_minitest.py::test_minitest[test_hide_senders_ip_address]": (
        "relay_minitest asks icanhazip.com for the client's public address: needs the internet"
    ),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "embedded_only: runs on the embedded store only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test needing `backend` (through the store and app fixtures of tests/store and
    tests/core) runs once per store backend, unless it is marked embedded_only: it is about
    what only the embedded store has (segments, batches, files)."""
    if "backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("embedded_only")
        metafunc.parametrize("backend", STORE_BACKENDS[:1] if only else STORE_BACKENDS)


def allowed_skip(nodeid: str) -> bool:
    return nodeid in ALLOWED_SKIPS or nodeid.partition("[")[0] in ALLOWED_SKIPS


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In CI, a skip not in ALLOWED_SKIPS becomes a failure that names the skip's reason."""
    report = yield
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return report
    if allowed_skip(item.nodeid):
        return report
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"skipped in CI, which allows only the skips listed in ALLOWED_SKIPS (tests/conftest.py): "
        f"{reason}"
    )
    return report


@pytest.fixture
def relay_config(tmp_path: Path) -> Config:
    """The config `relay_server` uses; override this fixture to change it."""
    return make_config(tmp_path / "data")


@pytest.fixture
async def relay_server(relay_config: Config) -> AsyncIterator[RelayServer]:
    """A relay serving every listener in this test's trio loop."""
    async with serving(relay_config) as relay:
        yield relay
