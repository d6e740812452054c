"""powercutfs: a pass-through FUSE file system that can lose power, as LazyFS does.

    python -m tests.powercut.powercutfs BACKING MOUNTPOINT [--ignore-fsync[=files]] [--torn SEED]

Every operation passes straight through to the directory BACKING, so a program on MOUNTPOINT
sees an ordinary POSIX file system (flock and fcntl locks are the kernel's own, as FUSE does them
for a file system without lock handlers). Beside the live tree the file system keeps the
*durable* state: what a disk with a volatile write cache is guaranteed to hold after losing power.

The model (the minimum POSIX promises, the one careful storage code is written against):

- A file's content (data and size) becomes durable when the file is fsync'ed or fdatasync'ed:
  the durable copy then equals the live file. Writes and truncations since the last sync are
  volatile.
- A directory's entries (create, mkdir, mknod, rename in or out, unlink, rmdir) become durable
  when the directory itself is fsync'ed: its durable entry list then equals the live one. Syncing
  a file does not make its name durable, nor does syncing a directory make its children's data
  durable. A renamed file keeps its (durable) content under whatever name is durable.
- Everything present in BACKING at mount time is durable.

SIGUSR2 toggles a failing card: while on, every write and every fsync/fdatasync (of files and
directories) fails with EIO and changes nothing; reads still work.

SIGUSR1 cuts the power: from that instant every operation fails with EIO (the disk is gone).
When the file system is then unmounted, BACKING is rebuilt from the durable state alone, walking
the durable entries from the root: what a cupboard appliance finds on its card after the power
comes back. An unmount without a cut is a clean shutdown: BACKING keeps the live tree.

--ignore-fsync: fsync and fdatasync of files and directories succeed but persist nothing, so a
cut returns BACKING to its state at mount time (the control: a relay without syncs must lose
mail). --ignore-fsync=files ignores the syncs of files only: directory entries still become
durable, so the files come back, empty or old (a relay whose data syncs were removed).
--torn SEED: at the cut, each unsynced 4 KiB page of file data reaches the disk with
probability one half, and so do the live entries of each directory (a cache that had written
back part of what it held; POSIX promises nothing about unsynced state, so this is allowed).

Durable file contents are kept as files in a state directory beside BACKING (BACKING.state),
written only for files changed since the mount (copy on first change). Symlinks and hard links
are refused (EPERM); the relay uses neither. Not modelled: reordering inside a synced range,
bit rot, metadata such as times and modes (restored as they are live).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import random
import shutil
import signal
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyfuse3
import trio

PAGE = 4096
TIMEOUT = 60.0  # kernel attribute/entry cache: every change goes through this process anyway
log = logging.getLogger("powercutfs")


@dataclass(eq=False)
class Node:
    """One inode. The live file is BACKING/<path of parent>/<name>; `parent` is None once the
    last live name is gone (an unlinked file can still be open and even synced)."""

    id: int
    ino: int  # st_ino of the live backing file
    kind: str  # "dir", "file" or "other" (a socket, a fifo)
    parent: Node | None
    name: bytes
    mode: int
    # file: where the durable content is; None = unchanged since the mount, the live file is it
    saved: Path | None = None
    dirty: set[int] = field(default_factory=set)  # file: pages written since the last sync
    entries: dict[bytes, Node] | None = None  # dir: the durable entries
    fds: set[int] = field(default_factory=set)


class PowercutFS(pyfuse3.Operations):
    def __init__(self, backing: Path, state: Path, *, ignore_fsync: str | None, torn: int | None):
        super().__init__()
        self.backing = backing.resolve()
        self.state = state
        self.ignore_fsync = ignore_fsync
        self.torn = torn
        self.cut = False
        self.failing = False  # SIGUSR2: writes and syncs fail with EIO
        self.nodes: dict[int, Node] = {}
        self.by_ino: dict[int, Node] = {}  # live backing st_ino -> node
        self.fh: dict[int, Node] = {}  # open file handle (a backing fd) -> node
        self.dirs: dict[int, Node] = {}  # open directory handle -> node
        self._next_id = pyfuse3.ROOT_INODE
        self._next_dh = 1
        if state.exists():
            shutil.rmtree(state)
        state.mkdir(parents=True)
        st = os.lstat(self.backing)
        self.root = self._new(st, parent=None, name=b"")
        self._adopt(self.root)

    # -- the node table ---------------------------------------------------------------------

    def _new(self, st: os.stat_result, parent: Node | None, name: bytes) -> Node:
        kind = (
            "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
        )
        node = Node(self._next_id, st.st_ino, kind, parent, name, st.st_mode)
        self._next_id += 1
        if kind == "dir":
            node.entries = {}
        self.nodes[node.id] = node
        self.by_ino[st.st_ino] = node
        return node

    def _adopt(self, directory: Node) -> None:
        """Register the tree found at mount time: all of it is durable."""
        assert directory.entries is not None
        for name in os.listdir(self._path(directory)):
            bname = os.fsencode(name)
            child = self._new(os.lstat(self._path(directory) / name), directory, bname)
            directory.entries[bname] = child
            if child.kind == "dir":
                self._adopt(child)

    def _path(self, node: Node) -> Path:
        parts = []
        while node.parent is not None:
            parts.append(os.fsdecode(node.name))
            node = node.parent
        if node is not self.root:
            raise pyfuse3.FUSEError(errno.ESTALE)
        return self.backing.joinpath(*reversed(parts))

    def _node(self, inode: int) -> Node:
        if self.cut:
            raise pyfuse3.FUSEError(errno.EIO)
        try:
            return self.nodes[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ESTALE) from None

    def _child(self, parent: Node, name: bytes) -> Node:
        st = _lstat(self._path(parent) / os.fsdecode(name))
        node = self.by_ino.get(st.st_ino)
        if node is None:  # cannot happen for names made through the mount; be lenient
            node = self._new(st, parent, name)
        return node

    def _attr(self, node: Node, st: os.stat_result | None = None) -> pyfuse3.EntryAttributes:
        if st is None:
            st = os.fstat(next(iter(node.fds))) if node.fds else _lstat(self._path(node))
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.id
        a.generation = 0
        a.entry_timeout = a.attr_timeout = TIMEOUT
        a.st_mode, a.st_nlink = st.st_mode, st.st_nlink
        a.st_uid, a.st_gid, a.st_rdev = st.st_uid, st.st_gid, st.st_rdev
        a.st_size, a.st_blksize, a.st_blocks = st.st_size, st.st_blksize, st.st_blocks
        a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        return a

    # -- the durable state ------------------------------------------------------------------

    def _before_change(self, node: Node) -> None:
        """Copy on first change: keep the mount-time content of a file before it goes."""
        if node.kind == "file" and node.saved is None:
            node.saved = self.state / str(node.id)
            shutil.copyfile(self._path(node), node.saved)

    def _detach(self, node: Node) -> None:
        """The node's last live name is gone (unlink, rmdir, renamed over); the caller kept its
        content first (_before_change)."""
        assert node.kind != "file" or node.saved is not None
        if self.by_ino.get(node.ino) is node:
            del self.by_ino[node.ino]
        node.parent = None

    def _sync_file(self, node: Node, fd: int) -> None:
        """Make the durable copy equal to the live file: copy the dirty pages, set the size."""
        if self.ignore_fsync is not None or node.kind != "file":
            return
        self._before_change(node)
        assert node.saved is not None
        size = os.fstat(fd).st_size
        out = os.open(node.saved, os.O_RDWR)
        try:
            durable_size = os.fstat(out).st_size
            for page in sorted(node.dirty):
                data = os.pread(fd, PAGE, page * PAGE)
                if data.count(0) == len(data) and page * PAGE >= durable_size:
                    continue  # a hole stays a hole: the truncate below reads as zeros there
                os.pwrite(out, data, page * PAGE)
            os.ftruncate(out, size)
        finally:
            os.close(out)
        node.dirty.clear()

    def _sync_dir(self, node: Node) -> None:
        if self.ignore_fsync != "all":
            node.entries = self._live_entries(node)

    def _live_entries(self, node: Node) -> dict[bytes, Node]:
        names = map(os.fsencode, os.listdir(self._path(node)))
        return {name: self._child(node, name) for name in names}

    def _mark(self, node: Node, start: int, end: int) -> None:
        node.dirty.update(range(start // PAGE, (end + PAGE - 1) // PAGE))

    def rebuild(self) -> None:
        """After a cut: replace BACKING by the durable state alone."""
        if self.torn is not None:
            self._write_back_some(random.Random(self.torn))
        new = self.backing.with_name(self.backing.name + ".rebuilt")
        if new.exists():
            shutil.rmtree(new)
        new.mkdir(mode=stat.S_IMODE(self.root.mode))
        seen: set[int] = {self.root.id}

        def build(directory: Node, dst: Path) -> None:
            assert directory.entries is not None
            for name, child in directory.entries.items():
                target = dst / os.fsdecode(name)
                if child.kind == "dir":
                    if child.id in seen:  # durable entries of different ages can form a cycle
                        continue
                    seen.add(child.id)
                    target.mkdir(mode=stat.S_IMODE(child.mode))
                    build(child, target)
                elif child.kind == "file":
                    source = child.saved if child.saved is not None else self._path(child)
                    shutil.copyfile(source, target)
                    os.chmod(target, stat.S_IMODE(child.mode))
                else:
                    os.mknod(target, child.mode)

        build(self.root, new)
        old = self.backing.with_name(self.backing.name + ".lost")
        os.rename(self.backing, old)
        os.rename(new, self.backing)
        shutil.rmtree(old)

    def _write_back_some(self, rnd: random.Random) -> None:
        """--torn: the cache wrote back a random half of the unsynced pages, and the entries of
        a random half of the directories, before the cut."""
        for node in self.nodes.values():
            if node.kind == "dir" and rnd.random() < 0.5:
                with contextlib.suppress(OSError, pyfuse3.FUSEError):  # gone live: keep durable
                    node.entries = self._live_entries(node)
            if node.kind != "file" or not node.dirty:
                continue
            keep = {p for p in node.dirty if rnd.random() < 0.5}
            fd = next(iter(node.fds), None)
            opened = fd is None
            if opened:
                try:
                    fd = os.open(self._path(node), os.O_RDONLY)
                except (OSError, pyfuse3.FUSEError):
                    continue
            assert fd is not None
            try:
                self._before_change(node)
                assert node.saved is not None
                out = os.open(node.saved, os.O_RDWR)
                try:
                    for page in sorted(keep):
                        os.pwrite(out, os.pread(fd, PAGE, page * PAGE), page * PAGE)
                finally:
                    os.close(out)
            finally:
                if opened:
                    os.close(fd)

    # -- lookups and attributes -------------------------------------------------------------

    async def lookup(self, parent_inode, name, ctx):
        parent = self._node(parent_inode)
        if name == b".":
            return self._attr(parent)
        if name == b"..":
            return self._attr(parent.parent or parent)
        node = self._child(parent, name)
        return self._attr(node)

    async def forget(self, inode_list):
        pass  # nodes are small and live as long as the mount

    async def getattr(self, inode, ctx):
        return self._attr(self._node(inode))

    async def setattr(self, inode, attr, fields, fh, ctx):
        node = self._node(inode)
        path = self._path(node) if fh is None else None
        target = fh if fh is not None else path
        if fields.update_size:
            self._before_change(node)
            old = os.fstat(fh).st_size if fh is not None else os.lstat(path).st_size
            os.truncate(target, attr.st_size)
            self._mark(node, min(old, attr.st_size), max(old, attr.st_size))
        if fields.update_mode:
            os.chmod(target, stat.S_IMODE(attr.st_mode))
            node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
        if fields.update_uid or fields.update_gid:
            uid = attr.st_uid if fields.update_uid else -1
            gid = attr.st_gid if fields.update_gid else -1
            if fh is not None:
                os.chown(fh, uid, gid)
            else:
                os.lchown(path, uid, gid)
        if fields.update_atime or fields.update_mtime:
            st = os.fstat(fh) if fh is not None else os.lstat(path)
            atime = attr.st_atime_ns if fields.update_atime else st.st_atime_ns
            mtime = attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns
            os.utime(target, ns=(atime, mtime))
        return self._attr(node)

    async def statfs(self, ctx):
        if self.cut:
            raise pyfuse3.FUSEError(errno.EIO)
        sv = os.statvfs(self.backing)
        out = pyfuse3.StatvfsData()
        for attr in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                     "f_ffree", "f_favail", "f_namemax"):  # fmt: skip
            setattr(out, attr, getattr(sv, attr))
        return out

    async def access(self, inode, mode, ctx):
        self._node(inode)
        return True

    # -- directories ------------------------------------------------------------------------

    async def opendir(self, inode, ctx):
        node = self._node(inode)
        if node.kind != "dir":
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        dh = self._next_dh
        self._next_dh += 1
        self.dirs[dh] = node
        return dh

    async def readdir(self, fh, start_id, token):
        node = self.dirs[fh]
        if self.cut:
            raise pyfuse3.FUSEError(errno.EIO)
        names = sorted(os.listdir(self._path(node)))
        for i, name in enumerate(names[start_id:], start_id):
            bname = os.fsencode(name)
            try:
                attr = self._attr(self._child(node, bname))
            except pyfuse3.FUSEError:
                continue  # gone meanwhile
            if not pyfuse3.readdir_reply(token, bname, attr, i + 1):
                break

    async def releasedir(self, fh):
        self.dirs.pop(fh, None)

    async def fsyncdir(self, fh, datasync):
        if self.cut or self.failing:
            raise pyfuse3.FUSEError(errno.EIO)
        self._sync_dir(self.dirs[fh])

    async def mkdir(self, parent_inode, name, mode, ctx):
        parent = self._node(parent_inode)
        path = self._path(parent) / os.fsdecode(name)
        _call(os.mkdir, path, stat.S_IMODE(mode))
        st = os.lstat(path)
        return self._attr(self._new(st, parent, name), st)

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        parent = self._node(parent_inode)
        path = self._path(parent) / os.fsdecode(name)
        _call(os.mknod, path, mode, rdev)
        st = os.lstat(path)
        return self._attr(self._new(st, parent, name), st)

    async def rmdir(self, parent_inode, name, ctx):
        parent = self._node(parent_inode)
        node = self._child(parent, name)
        _call(os.rmdir, self._path(parent) / os.fsdecode(name))
        self._detach(node)

    async def unlink(self, parent_inode, name, ctx):
        parent = self._node(parent_inode)
        node = self._child(parent, name)
        self._before_change(node)  # while the live file is still there to copy
        _call(os.unlink, self._path(parent) / os.fsdecode(name))
        self._detach(node)

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        old_parent, new_parent = self._node(parent_inode_old), self._node(parent_inode_new)
        if flags:
            raise pyfuse3.FUSEError(errno.EINVAL)  # RENAME_NOREPLACE/EXCHANGE: not needed here
        node = self._child(old_parent, name_old)
        new_path = self._path(new_parent) / os.fsdecode(name_new)
        try:
            replaced = self._child(new_parent, name_new)
        except pyfuse3.FUSEError:
            replaced = None
        if replaced is not None and replaced is not node:
            self._before_change(replaced)
        _call(os.rename, self._path(old_parent) / os.fsdecode(name_old), new_path)
        if replaced is not None and replaced is not node:
            self._detach(replaced)
        node.parent, node.name = new_parent, name_new

    async def symlink(self, parent_inode, name, target, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def link(self, inode, new_parent_inode, new_name, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    # -- files ------------------------------------------------------------------------------

    def _opened(self, node: Node, fd: int) -> pyfuse3.FileInfo:
        node.fds.add(fd)
        self.fh[fd] = node
        return pyfuse3.FileInfo(fh=fd)

    async def create(self, parent_inode, name, mode, flags, ctx):
        parent = self._node(parent_inode)
        path = self._path(parent) / os.fsdecode(name)
        fd = _call(
            os.open, path, _backing_flags(flags) | os.O_CREAT | os.O_EXCL, stat.S_IMODE(mode)
        )
        st = os.fstat(fd)
        node = self._new(st, parent, name)
        node.saved = self.state / str(node.id)  # durable content of a new file: empty
        node.saved.touch()
        return self._opened(node, fd), self._attr(node, st)

    async def open(self, inode, flags, ctx):
        node = self._node(inode)
        if flags & os.O_TRUNC:
            self._before_change(node)
            self._mark(node, 0, _lstat(self._path(node)).st_size)
        fd = _call(os.open, self._path(node), _backing_flags(flags))
        return self._opened(node, fd)

    async def read(self, fh, off, size):
        if self.cut:
            raise pyfuse3.FUSEError(errno.EIO)
        return _call(os.pread, fh, size, off)

    async def write(self, fh, off, buf):
        if self.cut or self.failing:
            raise pyfuse3.FUSEError(errno.EIO)
        node = self.fh[fh]
        self._before_change(node)
        n = _call(os.pwrite, fh, buf, off)
        self._mark(node, off, off + n)
        return n

    async def flush(self, fh):
        if self.cut:
            raise pyfuse3.FUSEError(errno.EIO)

    async def fsync(self, fh, datasync):
        if self.cut or self.failing:
            raise pyfuse3.FUSEError(errno.EIO)
        self._sync_file(self.fh[fh], fh)

    async def release(self, fh):
        node = self.fh.pop(fh, None)
        if node is not None:
            node.fds.discard(fh)
        os.close(fh)


def _backing_flags(flags: int) -> int:
    # O_APPEND would make the backing pwrite() ignore the offset the kernel chose; a file open
    # for writing is opened read-write, because a sync reads its dirty pages back.
    if flags & os.O_ACCMODE != os.O_RDONLY:
        flags = flags & ~os.O_ACCMODE | os.O_RDWR
    return flags & ~(os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_TRUNC) | os.O_CLOEXEC


def _call(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except OSError as e:
        raise pyfuse3.FUSEError(e.errno or errno.EIO) from None


def _lstat(path: Path) -> os.stat_result:
    return _call(os.lstat, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("backing", type=Path)
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument(
        "--ignore-fsync",
        nargs="?",
        const="all",
        choices=("all", "files"),
        help="persist nothing (all) or no file data (files): the controls",
    )
    parser.add_argument(
        "--torn", type=int, metavar="SEED", help="write back half the unsynced pages"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="powercutfs: %(message)s")
    state = args.backing.with_name(args.backing.name + ".state")
    fs = PowercutFS(args.backing, state, ignore_fsync=args.ignore_fsync, torn=args.torn)

    def power_cut(signum, frame):  # type: ignore[no-untyped-def]
        fs.cut = True  # checked as each operation starts; one that runs completes first

    def failing_card(signum, frame):  # type: ignore[no-untyped-def]
        fs.failing = not fs.failing

    signal.signal(signal.SIGUSR1, power_cut)
    signal.signal(signal.SIGUSR2, failing_card)
    options = set(pyfuse3.default_options) | {"fsname=powercutfs", "subtype=powercutfs"}
    pyfuse3.init(fs, str(args.mountpoint), options)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=False)
        for fd, node in list(fs.fh.items()):
            os.close(fd)
            node.fds.discard(fd)
    if fs.cut:
        fs.rebuild()
    shutil.rmtree(state, ignore_errors=True)
    print("powercutfs: " + ("power cut, unsynced state dropped" if fs.cut else "clean unmount"),
          file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
