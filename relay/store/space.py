"""Free space on the data disk: the watermark below which nothing new is taken, and the reserve
that lets deletions run when the disk is full anyway.

Below `accounts.min_free_disk_space` the store refuses what adds data (new mail, APPEND, queue
entries, accounts) with StorageFull; what frees space (expunge, delete, expiry) always goes on,
and acceptance resumes by itself when space comes back. Something else may still fill the disk
to the last block (logs, another program); for that the store keeps a reserve file, given back
to the file system when space runs out so that deletions, SQLite's journal and a restart find
room, and made again once there is plenty.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from pathlib import Path

from .types import StorageFull

RESERVE_BYTES = 16 << 20
CHECK_EVERY = 1.0  # seconds a free-space figure is trusted for the protocols' quick checks


def is_disk_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


class Space:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.reserve = directory / "reserve"
        self._checked_at = -CHECK_EVERY
        self._free = 0
        self._wanted = 0  # free bytes a refused write needed: full until they are there

    def free(self) -> int | None:
        """Bytes available on the data disk now; None if the figure cannot be read."""
        try:
            st = os.statvfs(self.directory)
        except OSError:
            return None
        self._free, self._checked_at = st.f_bavail * st.f_frsize, time.monotonic()
        return self._free

    def low(self, watermark: int) -> bool:
        """Whether new data is refused: below the watermark, or since a write was refused for
        want of space and until that much is free (a figure at most CHECK_EVERY old)."""
        if time.monotonic() - self._checked_at >= CHECK_EVERY and self.free() is None:
            return False  # an unreadable figure is not a reason to refuse (as the anchor)
        if self._free >= self._wanted:
            self._wanted = 0
        return self._free < max(watermark, self._wanted)

    def require(self, watermark: int, nbytes: int) -> None:
        """Raise StorageFull unless `nbytes` more leave at least `watermark` free."""
        free = self.free()
        if free is not None and free - nbytes < watermark:
            self._wanted = max(self._wanted, watermark + nbytes)
            raise StorageFull(f"{free} bytes free, {nbytes} more wanted, {watermark} kept free")

    def release_reserve(self) -> bool:
        """Give the reserve back to the file system; True if there was one."""
        try:
            self.reserve.unlink()
        except FileNotFoundError:
            return False
        self._checked_at = -CHECK_EVERY
        return True

    def keep_reserve(self, watermark: int) -> None:
        """(Re)make the reserve when the disk has plenty of room for it."""
        size = min(RESERVE_BYTES, watermark // 2)
        free = self.free()
        if size <= 0 or free is None or free < watermark + 2 * size or self.reserve.exists():
            return
        with contextlib.suppress(OSError):  # a file system without fallocate: no reserve
            fd = os.open(self.reserve, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
