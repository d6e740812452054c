#!/usr/bin/env python3
"""Print the Python packages a Buildroot source tree ships, one `name version` a line.

Usage: image/buildroot-python-packages.py BUILDROOT_DIR > buildroot-config/buildroot-python-packages.txt

Reads package/python3/python3.mk and every package/python-*/python-*.mk; a version that refers
to other variables of its own .mk is expanded. The list lets the offline tests check that the
Python packages the relay needs exist in the pinned Buildroot release, at versions it accepts.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ASSIGNMENT = re.compile(r"^([A-Z0-9_]+)\s*:?=\s*(.*?)\s*$")
REFERENCE = re.compile(r"\$\(([A-Z0-9_]+)\)")


def release(tree: Path) -> str:
    m = re.search(r"^export BR2_VERSION := (\S+)$", (tree / "Makefile").read_text(), re.M)
    if not m:
        raise SystemExit(f"{tree}: no BR2_VERSION in the Makefile; is it a Buildroot tree?")
    return m.group(1)


def version_of(mk: Path) -> str | None:
    variables: dict[str, str] = {}
    for line in mk.read_text().splitlines():
        m = ASSIGNMENT.match(line)
        if m:
            variables.setdefault(m.group(1), m.group(2).split("#")[0].strip())
    prefix = mk.stem.upper().replace("-", "_")
    value = variables.get(f"{prefix}_VERSION")
    for _ in range(5):
        if value is None or "$(" not in value:
            break
        value = REFERENCE.sub(lambda r: variables.get(r.group(1), r.group(0)), value)
    return value


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    tree = Path(argv[1])
    print(f"# The Python packages of Buildroot {release(tree)}, one `name version` a line.")
    print("# Made by image/buildroot-python-packages.py from that release's package/*/*.mk.")
    mks = [tree / "package/python3/python3.mk", *sorted(tree.glob("package/python-*/python-*.mk"))]
    for mk in mks:
        if mk.stem != mk.parent.name:
            continue
        version = version_of(mk)
        if version:
            print(mk.stem, version)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
