"""The `rauc` command line, the one way the relay touches the update machinery.

`rauc info` reads a bundle's manifest after checking its signature against the system's keyring;
`rauc status` tells the system's compatible and what the booted slot holds; `rauc install` asks
the RAUC service (over the D-Bus system bus) to write the bundle to the inactive slot and mark
it for the next boot, printing its progress as lines like " 40% Checking bundle done.".
The relay runs them as its own user: RAUC takes a lease on the bundle file, which only its owner
may, so bundles are installed from the relay's own copy (relay.core.update.updater).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

QUERY_TIMEOUT = 600.0  # `rauc info` hashes the whole bundle: minutes for a big one on an SD card
INSTALL_TIMEOUT = 3600.0
PROGRESS_RE = re.compile(r"\s*(\d{1,3})% (.*)")  # used with fullmatch
VERSION_RE = re.compile(r"v?(\d{1,9}(?:\.\d{1,9})*)")  # used with fullmatch
MAX_OUTPUT_LINE = 4096


class RaucError(Exception):
    """rauc refused or failed; the message is rauc's own reason."""


@dataclass(frozen=True)
class Bundle:
    compatible: str
    version: str


@dataclass(frozen=True)
class System:
    compatible: str
    booted_version: str | None  # what the booted slot was installed from; None: flashed


def parse_version(text: str) -> tuple[int, ...]:
    """Dotted numbers, compared numerically ("1.10" is newer than "1.9"); raises ValueError."""
    m = VERSION_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a version of dotted numbers: {text!r}")
    parts = [int(p) for p in m.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:  # "1.2.0" is "1.2"
        parts.pop()
    return tuple(parts)


async def bundle_info(rauc: str, bundle: Path) -> Bundle:
    """The manifest of a bundle whose signature the system's keyring accepts."""
    found = await _json(rauc, "info", "--output-format=json", str(bundle))
    compatible, version = found.get("compatible"), found.get("version")
    if not isinstance(compatible, str) or not isinstance(version, str):
        raise RaucError("the bundle's manifest has no compatible or no version")
    return Bundle(compatible=compatible, version=version)


async def system_status(rauc: str) -> System:
    found = await _json(rauc, "status", "--detailed", "--output-format=json")
    compatible = found.get("compatible")
    if not isinstance(compatible, str):
        raise RaucError("rauc status names no compatible")
    return System(compatible=compatible, booted_version=_booted_version(found))


def _booted_version(status: dict[str, Any]) -> str | None:
    for entry in status.get("slots") or []:
        for slot in entry.values() if isinstance(entry, dict) else ():
            if isinstance(slot, dict) and slot.get("state") == "booted":
                bundle = (slot.get("slot_status") or {}).get("bundle") or {}
                version = bundle.get("version")
                return version if isinstance(version, str) else None
    return None


async def install(rauc: str, bundle: Path, progress: Callable[[int, str], None]) -> None:
    """Install through the RAUC service; `progress(percent, step)` for each progress line."""
    try:
        process = await trio.lowlevel.open_process(
            [rauc, "install", str(bundle)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as e:
        raise RaucError(f"cannot run {rauc}: {e.strerror or e}") from None
    assert process.stdout is not None
    last = ""
    try:
        with trio.fail_after(INSTALL_TIMEOUT):
            async for line in _lines(process.stdout):
                m = PROGRESS_RE.fullmatch(line)
                if m:
                    progress(min(int(m.group(1)), 100), m.group(2))
                elif line.startswith("LastError: "):
                    last = line.removeprefix("LastError: ")
                elif line.strip() and not last:
                    last = line.strip()
            code = await process.wait()
    except trio.TooSlowError:
        raise RaucError(f"rauc install did not finish within {INSTALL_TIMEOUT:.0f} s") from None
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    if code != 0:
        raise RaucError(last or f"rauc install failed (exit code {code})")


async def _lines(stream: trio.abc.ReceiveStream) -> Any:
    """The output's lines, each cut to MAX_OUTPUT_LINE (bounded memory whatever rauc prints)."""
    pending = b""
    while chunk := await stream.receive_some(65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line[:MAX_OUTPUT_LINE].decode("utf-8", "replace")
        pending = pending[-MAX_OUTPUT_LINE:]
    if pending:
        yield pending.decode("utf-8", "replace")


async def _json(rauc: str, *args: str) -> dict[str, Any]:
    try:
        with trio.fail_after(QUERY_TIMEOUT):
            done = await trio.run_process(
                [rauc, *args], capture_stdout=True, capture_stderr=True, check=False
            )
    except trio.TooSlowError:
        raise RaucError(f"rauc {args[0]} did not answer within {QUERY_TIMEOUT:.0f} s") from None
    except OSError as e:
        raise RaucError(f"cannot run {rauc}: {e.strerror or e}") from None
    if done.returncode != 0:
        raise RaucError(_reason(done.stderr) or f"rauc {args[0]} failed")
    try:
        found = json.loads(done.stdout)
    except ValueError:
        raise RaucError(f"rauc {args[0]} printed no JSON") from None
    if not isinstance(found, dict):
        raise RaucError(f"rauc {args[0]} printed no JSON object")
    return found


def _reason(stderr: bytes) -> str:
    """rauc's error: the last line of its stderr that is not a progress message."""
    lines = stderr.decode("utf-8", "replace").splitlines()
    reasons = [line.strip() for line in lines if line.strip() and "rauc-Message" not in line]
    return reasons[-1][:MAX_OUTPUT_LINE] if reasons else ""
