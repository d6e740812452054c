"""Opening and closing the store's files: the process lock and crash recovery."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from relay.durable import fsync_directory, make_dirs

from . import compat, index
from .segments import SegmentLog
from .types import StoreError
from .writer import Database


def lock_directory(directory: Path) -> int:
    """One process at a time: a second writer appending to the same segment would corrupt it."""
    make_dirs(directory)
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"{directory} is in use by another process (is the relay running?)"
        ) from None
    return fd


def recover(directory: Path, segment_size: int) -> tuple[Database, SegmentLog, int, int]:
    """Open the index and the log, and apply every complete batch the index has not seen;
    refuses (StoreTooNew) a store a newer relay wrote in a format this one cannot read."""
    compat.claim(directory)
    conn = index.connect(directory / "index.sqlite")
    fsync_directory(directory)  # SQLite syncs the directory for its journals, not the database
    seglog = SegmentLog(directory / "segments", segment_size=segment_size)
    lsn = index.get_meta(conn, "lsn")
    replayed = 0
    for records, seg, end, commit_lsn in seglog.scan(
        index.get_meta(conn, "seg"), index.get_meta(conn, "end"), lsn
    ):
        conn.execute("BEGIN")
        for rec in records:
            index.apply(conn, rec.meta, rec.body_loc)
        lsn = commit_lsn
        index.set_meta(conn, "lsn", lsn)
        index.set_meta(conn, "seg", seg)
        index.set_meta(conn, "end", end)
        conn.execute("COMMIT")
        replayed += 1
    return Database(conn), seglog, lsn, replayed


def close(db: Database, seglog: SegmentLog, lock: int) -> None:
    db.conn.close()
    seglog.close()
    os.close(lock)
