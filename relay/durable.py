"""Files and directories that survive a power cut: the one way the relay creates them.

A new name (a directory made, a file created or renamed) is only durable once the directory
holding it has been fsynced; without that, a disk with a volatile cache can lose a whole data
directory made minutes ago. A leaf module with no relay imports, so the store may use it too.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

_secret_lock = threading.Lock()


def write_atomically(
    path: Path, data: bytes, *, mode: int = 0o600, owner: tuple[int, int] | None = None
) -> None:
    """Write to a temporary name, fsync, rename over `path`, then fsync the directory.

    `owner` (uid, gid) is given to the new file before it takes the name (root rewriting a
    file the relay's user must keep reading)."""
    make_dirs(path.parent)
    # Its own temporary name per process and thread: two writers of one file at once (two ACME
    # keepers, the CLI beside the relay) must not rename each other's half-written file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    if owner is not None:
        os.fchown(fd, *owner)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def fsync_directory(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path, *, mode: int = 0o700) -> None:
    """`mkdir -p path`, with every directory it makes durable in its parent before it returns."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=mode)
        except FileExistsError:
            if not directory.is_dir():
                raise
        fsync_directory(directory.parent)


def created(path: Path) -> None:
    """Make the name of a file just created durable (fsync of its directory)."""
    fsync_directory(path.parent)


def load_or_create_secret(path: Path) -> bytes:
    """The secret kept in `path`, made (random, URL-safe) and written durably at the first use.

    For secrets the relay generates itself when the config leaves them empty (the TURN secret,
    the Shadowsocks password): made once, mode 0600, so what was handed out stays valid across
    restarts, and gone with the data dir at a factory reset.
    """
    with _secret_lock:
        try:
            secret = path.read_bytes().strip()
        except FileNotFoundError:
            secret = b""
        if not secret:
            secret = secrets.token_urlsafe(32).encode()
            write_atomically(path, secret + b"\n", mode=0o600)
        return secret
