"""fakecardfs: a FUSE file system holding one file, card.img, that behaves like a counterfeit SD
card: it claims SIZE bytes, but stores only as many as its backing file has, and what is
written past that lands back at the start (offset modulo the real size), as on a card whose
controller ignores the address bits its flash does not have.

    python tests/image/fakecardfs.py BACKING MOUNTPOINT --size SIZE

A loop device over MOUNTPOINT/card.img is then a block device of SIZE bytes that lies. The file
is opened with direct_io, so the kernel's page cache never answers a read from what was written
at the same offset: every read sees the backing file, wrapped. With SIZE equal to the backing
file's size it is an honest card (the control).
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import time
from pathlib import Path

import pyfuse3
import trio

CARD_NAME = b"card.img"
CARD_INODE = pyfuse3.ROOT_INODE + 1


class FakeCardFS(pyfuse3.Operations):
    def __init__(self, backing: Path, size: int) -> None:
        super().__init__()
        self.fd = os.open(backing, os.O_RDWR)
        self.real = os.fstat(self.fd).st_size
        if self.real <= 0 or size < self.real:
            raise SystemExit("fakecardfs: SIZE must be at least the backing file's size")
        self.size = size
        self.started = time.time_ns()

    def _attributes(self, inode: int) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        if inode == pyfuse3.ROOT_INODE:
            attr.st_mode = stat.S_IFDIR | 0o755
            attr.st_nlink = 2
        elif inode == CARD_INODE:
            attr.st_mode = stat.S_IFREG | 0o600
            attr.st_nlink = 1
            attr.st_size = self.size
        else:
            raise pyfuse3.FUSEError(errno.ENOENT)
        attr.st_blksize = 4096
        attr.st_blocks = attr.st_size // 512
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = self.started
        attr.st_uid, attr.st_gid = os.getuid(), os.getgid()
        return attr

    async def getattr(self, inode, ctx=None):
        return self._attributes(inode)

    async def lookup(self, parent_inode, name, ctx=None):
        if parent_inode != pyfuse3.ROOT_INODE or name != CARD_NAME:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attributes(CARD_INODE)

    async def opendir(self, inode, ctx):
        if inode != pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh, start_id, token):
        if start_id == 0:
            pyfuse3.readdir_reply(token, CARD_NAME, self._attributes(CARD_INODE), 1)

    async def open(self, inode, flags, ctx):
        if inode != CARD_INODE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        return pyfuse3.FileInfo(fh=inode, direct_io=True)

    def _pieces(self, off: int, length: int):
        """(physical offset, length) runs for `length` bytes from logical `off`, wrapped."""
        while length > 0:
            physical = off % self.real
            n = min(length, self.real - physical)
            yield physical, n
            off += n
            length -= n

    async def read(self, fh, off, size):
        size = max(0, min(size, self.size - off))
        return b"".join(os.pread(self.fd, n, p) for p, n in self._pieces(off, size))

    async def write(self, fh, off, buf):
        if off + len(buf) > self.size:
            raise pyfuse3.FUSEError(errno.ENOSPC)
        done = 0
        for physical, n in self._pieces(off, len(buf)):
            os.pwrite(self.fd, buf[done : done + n], physical)
            done += n
        return len(buf)

    async def fsync(self, fh, datasync):
        os.fsync(self.fd)

    async def flush(self, fh):
        pass

    async def release(self, fh):
        pass

    async def releasedir(self, fh):
        pass

    async def setattr(self, inode, attr, fields, fh, ctx):
        if fields.update_size:
            raise pyfuse3.FUSEError(errno.EPERM)  # a card does not change its size
        return self._attributes(inode)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("backing", type=Path)
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--size", type=int, required=True, help="the size the card claims")
    args = parser.parse_args(argv)
    fs = FakeCardFS(args.backing, args.size)
    options = set(pyfuse3.default_options) | {"fsname=fakecardfs", "subtype=fakecardfs"}
    pyfuse3.init(fs, str(args.mountpoint), options)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=False)
        os.close(fs.fd)


if __name__ == "__main__":
    main()
