"""Factory reset that survives a power cut at any moment: `schedule_factory_reset` only writes a
flag file (durably) and the relay restarts; `apply_pending_factory_reset`, called at start before
the store opens, deletes everything and removes the flag last, so an interrupted wipe simply runs
again."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from relay.config import Config
from relay.durable import fsync_directory, write_atomically

RESET_FLAG = ".factory-reset"


def schedule_factory_reset(config: Config) -> None:
    """Write the reset flag durably; nothing is deleted until the next start."""
    flag = config.data_dir / RESET_FLAG
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_atomically(flag, f"requested {stamp}\n".encode())


def apply_pending_factory_reset(config: Config) -> bool:
    """If a reset is pending, wipe the data dir (accounts, mail, keys, certificates, local
    settings) and then remove the flag. Idempotent: a wipe cut short by power loss is redone.

    The config file the relay was started with is kept when it lives inside the data dir,
    or the relay could not start again; everything else there goes.
    """
    data_dir = config.data_dir.resolve()
    flag = data_dir / RESET_FLAG
    if not flag.exists():
        return False
    keep = {flag}
    if config.source is not None:
        source = Path(config.source).resolve()
        keep.add(source)
        keep.update(source.parents)
    _wipe(data_dir, keep)
    fsync_directory(data_dir)
    flag.unlink()
    fsync_directory(data_dir)
    return True


def _wipe(directory: Path, keep: set[Path]) -> None:
    for entry in directory.iterdir():
        if entry in keep:
            if entry.is_dir() and not entry.is_symlink():
                _wipe(entry, keep)
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
