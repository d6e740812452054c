"""What became of the last installed update, told by the relay that starts after its reboot.

Once `rauc install` has written a slot, and before the reboot into it, the updater records
`<data_dir>/update/tried.json`: the bundle's version, the version that ran, and the kernel's
boot id. The relay's next start compares it with the boot it runs in:

- the same boot: nothing rebooted yet (the relay restarted, or the reboot command failed), so
  the update is installed and waits for the reboot;
- another boot, and the booted slot holds that version: updated. The record stays while the
  slot is on trial: chatmail-update-check removes it once it commits the slot;
- another boot on another version: the new slot did not come up healthy, and the firmware
  started the committed slot again. That relay reports the rollback and removes the record, so
  the boot after that shows the invite again.

The data partition is shared by both slots, so this works whichever version reads it; the
format is kept plain for that reason.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from relay.durable import write_atomically

RECORD = "tried.json"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Trial:
    version: str  # the installed bundle's
    previous: str  # what ran when it was installed
    boot_id: str  # the boot that installed it


@dataclass(frozen=True)
class Outcome:
    state: str  # installed | updated | rolled-back
    message: str


def current_boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def record(directory: Path, version: str, previous: str) -> None:
    trial = Trial(version=version, previous=previous, boot_id=current_boot_id())
    write_atomically(directory / RECORD, json.dumps(asdict(trial)).encode())


def load(directory: Path) -> Trial | None:
    """The record, or None; one that cannot be read as a Trial is removed."""
    path = directory / RECORD
    try:
        found = json.loads(path.read_bytes())
        return Trial(**{key: str(found[key]) for key in ("version", "previous", "boot_id")})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        remove(directory)
        return None


def remove(directory: Path) -> None:
    """Gone, or left to be told once more where the data disk takes no change (read-only)."""
    with contextlib.suppress(OSError):
        (directory / RECORD).unlink()


def outcome(trial: Trial, running: str, boot_id: str) -> Outcome:
    """What became of `trial`, seen from a relay running version `running` in boot `boot_id`."""
    if boot_id == trial.boot_id:
        return Outcome("installed", f"{trial.version} installed, waiting for the reboot into it")
    if running == trial.version:
        return Outcome("updated", f"{trial.version} runs, updated from {trial.previous}")
    return Outcome(
        "rolled-back",
        f"{trial.version} did not come up healthy after its reboot; back on {running},"
        " nothing lost",
    )
