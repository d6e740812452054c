#!/usr/bin/env python3
"""The versions of the Python packages the appliance image ships (the pinned Buildroot release
plus this tree's own packages), and a pip constraints file made from them.

    image/buildroot_versions.py > constraints.txt

The twins install the relay's dependencies with these constraints, so they run the versions the
Buildroot image has; the dependency-contract tests read the same lists.
"""

from __future__ import annotations

import re
from pathlib import Path

TREE = Path(__file__).resolve().parents[1] / "buildroot-config"
PLAIN_VERSION = re.compile(r"[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?")  # not a git hash


def release_packages() -> dict[str, str]:
    """Buildroot package name -> version, for the pinned release's Python packages."""
    out = {}
    for line in (TREE / "buildroot-python-packages.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split()
            out[name] = version
    return out


def external_packages() -> dict[str, str | None]:
    """This tree's packages: name -> version (None when not downloaded, e.g. chatmail-relay)."""
    out: dict[str, str | None] = {}
    for mk in sorted(TREE.glob("package/*/*.mk")):
        prefix = mk.stem.upper().replace("-", "_")
        m = re.search(rf"^{prefix}_VERSION = ([^\s$]+)$", mk.read_text(), re.M)
        out[mk.stem] = m.group(1) if m else None
    return out


def constraints() -> list[str]:
    """`name==version` for every Python package of the image (pip ignores the ones nothing
    requires); Buildroot's python-foo is the distribution foo."""
    shipped = {**release_packages(), **external_packages()}
    return [
        f"{name.removeprefix('python-')}=={version}"
        for name, version in sorted(shipped.items())
        if name.startswith("python-") and version and PLAIN_VERSION.fullmatch(version)
    ]


if __name__ == "__main__":
    print("\n".join(constraints()))
