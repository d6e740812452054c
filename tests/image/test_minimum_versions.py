"""The version ranges pyproject.toml declares, tested at their edges: a fresh virtualenv with
exactly the declared floor of every runtime dependency (`floors`), and one with exactly the
versions the pinned Buildroot release ships (`buildroot`: what the image would run, on this
machine's Python), each running a subset of the suite that exercises every dependency.

Slow (a few minutes: wheels from PyPI, then the subset); CI runs it with the rest. Locally:
`pytest tests/image/test_minimum_versions.py` or deselect with -m 'not slow'."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).parent))

import contract  # noqa: E402

REPO = contract.REPO
# Tests that exercise every runtime dependency: Argon2id and x509 (cryptography), the store
# (sqlite3), SMTP with DKIM and MX lookups (dkimpy, dnspython), the web pages and the invite
# QR (h11, qrcode), ACME against pebble (acme, josepy), config editing (tomlkit), and hwctl's
# screens, mDNS and USB handling (pillow, zeroconf, ifaddr, pyudev).
SUBSET = [
    "tests/core",
    "tests/policy/test_headers.py",
    "tests/smtp/test_mx.py",
    "tests/smtp/test_submission.py",
    "tests/web/test_acme.py",
    "tests/web/test_new.py",
    "tests/web/test_pages.py",
    "tests/test_config.py",
    "tests/test_config_edit.py",
    "tests/test_tls.py",
    "tests/test_malloc_tuning.py",
    "tests/hwctl/test_cli.py",
    "tests/hwctl/test_screens_without_freetype.py",
    "tests/hwctl/test_mdns.py",
    "tests/hwctl/test_usb.py",
    "tests/hwctl/test_epd.py",
]
# What the subset itself needs, in the ranges of the test extras.
TEST_TOOLS = ("pytest", "pytest-trio", "pytest-timeout", "hypothesis", "pgpy")


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def runtime_requirements() -> list[Requirement]:
    return [Requirement(r) for r in project()["dependencies"]]


def subset_tools() -> list[str]:
    tools = [Requirement(r) for r in project()["optional-dependencies"]["test"]]
    return [str(r) for r in tools if canonicalize_name(r.name) in TEST_TOOLS]


def floor_pins() -> dict[str, str]:
    pins = {}
    for requirement in runtime_requirements():
        floors = [s.version for s in requirement.specifier if s.operator == ">="]
        assert len(floors) == 1, f"{requirement}: declare exactly one floor (>=)"
        pins[canonicalize_name(requirement.name)] = floors[0]
    return pins


def closure() -> set[str]:
    """The runtime dependencies and everything they pull in, as installed here."""
    seen: set[str] = set()
    todo = [r.name for r in runtime_requirements()]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def buildroot_pins() -> dict[str, str]:
    """Every distribution of the closure that the image has, at the image's version."""
    shipped = {**contract.release_packages(), **contract.external_packages()}
    pins = {}
    for name in sorted(closure()):
        version = shipped.get(f"python-{name}")
        if version and re.fullmatch(r"[0-9][0-9A-Za-z.]*", version):
            pins[name] = version
    for requirement in runtime_requirements():
        assert canonicalize_name(requirement.name) in pins, f"{requirement.name} not on the image"
    return pins


def run(args: list[str], timeout: int, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["floors", "buildroot"])
def test_the_declared_range_holds_at(variant: str, tmp_path: Path) -> None:
    pins = floor_pins() if variant == "floors" else buildroot_pins()
    started = time.monotonic()
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "venv", str(venv)], timeout=300, check=True)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    requested = [f"{r.name}=={pins[canonicalize_name(r.name)]}" for r in runtime_requirements()]
    install = run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(constraints), *requested, *subset_tools()],
        timeout=1800,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    assert "yanked version" not in install.stderr, f"{variant}: a pin is yanked:\n{install.stderr}"
    check = run([str(python), "-m", "pip", "check"], timeout=120)
    assert check.returncode == 0, f"{variant}: the pinned versions conflict:\n{check.stdout}"
    listed = run([str(python), "-m", "pip", "list", "--format=json"], timeout=120, check=True)
    installed = {canonicalize_name(p["name"]): p["version"] for p in json.loads(listed.stdout)}
    for name, version in pins.items():
        if name in installed:  # a constraint only binds what something requires
            assert metadata_version(installed[name]) == metadata_version(version), name
    installed_at = time.monotonic()
    tests = run(
        # the runtime dependencies only: the PostgreSQL store (the optional `postgresql` extra,
        # which neither environment installs) is deselected
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
         "-k", "not postgresql", *SUBSET],
        timeout=1800, cwd=REPO,
    )  # fmt: skip
    finished = time.monotonic()
    print(
        f"{variant}: install {installed_at - started:.0f} s, subset {finished - installed_at:.0f} s;"
        f" {', '.join(f'{n}=={v}' for n, v in sorted(pins.items()))}"
    )
    assert tests.returncode == 0, tests.stdout[-20000:] + tests.stderr[-3000:]


def metadata_version(version: str) -> str:
    return re.sub(r"(\.0)+$", "", version)
