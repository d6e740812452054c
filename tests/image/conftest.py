"""Fixtures for the appliance image tests: the QEMU twin, built once per session."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from twin import GUEST_DOMAIN, RUN_TOOLS, build, build_tools, missing_tools, need  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "qemu: builds and boots the QEMU twin (minutes; deselect locally with -m 'not qemu')",
    )
    config.addinivalue_line(
        "markers", "slow: minutes of installing and testing (CI runs it; -m 'not slow' skips it)"
    )


@pytest.fixture(scope="session")
def twin_builds(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A built twin per architecture, made once a session when first asked for:
    CHATMAIL_TWIN_DIR_AMD64 / _ARM64 when set (a previous build-twin.sh output), else built now."""
    built: dict[str, Path] = {}

    def get(arch: str) -> Path:
        need(os.geteuid() == 0, "the twin build needs root (mmdebstrap, chroot)")
        missing = missing_tools(RUN_TOOLS[arch])
        prebuilt = os.environ.get(f"CHATMAIL_TWIN_DIR_{arch.upper()}")
        if prebuilt:
            need(not missing, f"missing tools: {' '.join(missing)}")
            return Path(prebuilt)
        missing += missing_tools(build_tools(arch))
        need(not missing, f"missing tools: {' '.join(missing)}")
        if arch not in built:
            built[arch] = build(tmp_path_factory.mktemp(f"twin-build-{arch}"), arch)
        return built[arch]

    return get


@pytest.fixture(scope="module")
def account() -> tuple[str, str]:
    """A fresh address on the twin; the relay creates the account at its first login."""
    name = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(9))
    return f"{name}@[{GUEST_DOMAIN}]", secrets.token_urlsafe(18)
