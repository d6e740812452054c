"""Fixtures for the appliance image tests: the QEMU twin, built once per session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from twin import BUILD_TOOLS, RUN_TOOLS, build, missing_tools, need  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "qemu: builds and boots the QEMU twin (minutes; deselect locally with -m 'not qemu')",
    )
    config.addinivalue_line(
        "markers", "slow: minutes of installing and testing (CI runs it; -m 'not slow' skips it)"
    )


@pytest.fixture(scope="session")
def twin_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A built twin: CHATMAIL_TWIN_DIR when set (a previous build-twin.sh output), else built now."""
    need(os.geteuid() == 0, "the twin build needs root (mmdebstrap, chroot)")
    missing = missing_tools(RUN_TOOLS)
    prebuilt = os.environ.get("CHATMAIL_TWIN_DIR")
    if prebuilt:
        need(not missing, f"missing tools: {' '.join(missing)}")
        yield Path(prebuilt)
        return
    missing += missing_tools(BUILD_TOOLS)
    need(not missing, f"missing tools: {' '.join(missing)}")
    yield build(tmp_path_factory.mktemp("twin-build"))
