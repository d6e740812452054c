"""Power-cut recovery: the index may lag behind the log (SQLite synchronous=NORMAL loses its last
transactions) and the log's last batch may be torn. Simulated by restoring an older index and
cutting or corrupting the newest segment."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from relay.log import Logger
from relay.store import StoreError, open_store
from tests.helpers import deliver_to, make_account
from tests.store.conftest import PASSWORD
from tests.store.helpers import addr, store_config

A = addr("recovery1")


def save_index(store_dir: Path, to: Path) -> None:
    to.mkdir()
    for f in store_dir.glob("index.sqlite*"):
        shutil.copy2(f, to / f.name)


def restore_index(saved: Path, store_dir: Path) -> None:
    for f in store_dir.glob("index.sqlite*"):
        f.unlink()
    for f in saved.iterdir():
        shutil.copy2(f, store_dir / f.name)


def newest_segment(store_dir: Path) -> Path:
    return sorted((store_dir / "segments").iterdir())[-1]


def log_end(store_dir: Path) -> int:
    """Where the log's valid data ends (segments are preallocated, so not the file size)."""
    conn = sqlite3.connect(store_dir / "index.sqlite")
    try:
        return conn.execute("SELECT value FROM meta WHERE key='end'").fetchone()[0]
    finally:
        conn.close()


async def prepare(data_dir: Path, tmp: Path) -> tuple[Path, Path, int, int]:
    """Four messages and an expunge in the index copy; one more message after it, in the log only.
    Returns (store dir, saved index, segment size before and after the last batch)."""
    config = store_config(data_dir)
    async with open_store(config, Logger(level="error"), expiry_interval=None) as store:
        assert await make_account(store, A, PASSWORD)
        for n in range(1, 5):
            await deliver_to(store, [A], b"message %d" % n)
        await store.expunge(A, "INBOX", [2])
    store_dir = data_dir / "store"
    saved = tmp / "index-before"
    save_index(store_dir, saved)
    before = log_end(store_dir)
    async with open_store(config, Logger(level="error"), expiry_interval=None) as store:
        await deliver_to(store, [A], b"message 5")
        await store.expunge(A, "INBOX", [3])
    return store_dir, saved, before, log_end(store_dir)


async def uids_and_bodies(data_dir: Path) -> dict[int, bytes]:
    async with open_store(store_config(data_dir), Logger(level="error"), expiry_interval=None) as s:
        snap = await s.snapshot(A, "INBOX")
        return {m.uid: await s.read(A, "INBOX", m.uid) for m in snap.messages}


async def test_index_behind_the_log_is_caught_up_and_expunges_stay(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store_dir, saved, _, _ = await prepare(data_dir, tmp_path)
    restore_index(saved, store_dir)
    assert await uids_and_bodies(data_dir) == {1: b"message 1", 4: b"message 4", 5: b"message 5"}


async def test_torn_last_batch_is_ignored_and_the_log_continues(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store_dir, saved, before, after = await prepare(data_dir, tmp_path)
    pristine = tmp_path / "pristine"
    shutil.copytree(store_dir, pristine)
    old = {1: b"message 1", 3: b"message 3", 4: b"message 4"}
    with_5 = old | {5: b"message 5"}
    # two batches follow the saved index: [deliver 5] then [expunge 3]
    for cut, expected in [(before + 1, old), (before + 20, old), (after - 1, with_5)]:
        shutil.rmtree(store_dir)
        shutil.copytree(pristine, store_dir)
        restore_index(saved, store_dir)
        with open(newest_segment(store_dir), "r+b") as f:
            f.truncate(cut)
        assert await uids_and_bodies(data_dir) == expected, cut
        async with open_store(store_config(data_dir), Logger(level="error")) as store:
            await deliver_to(store, [A], b"after the crash")
        found = await uids_and_bodies(data_dir)
        assert found[max(found)] == b"after the crash"
        assert max(found) >= 5


async def test_corrupted_last_batch_is_ignored(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store_dir, saved, before, after = await prepare(data_dir, tmp_path)
    restore_index(saved, store_dir)
    segment = newest_segment(store_dir)
    data = bytearray(segment.read_bytes())
    data[(before + after) // 2] ^= 0xFF
    segment.write_bytes(bytes(data) + b"\x00garbage after the end")
    found = await uids_and_bodies(data_dir)
    assert found == {1: b"message 1", 3: b"message 3", 4: b"message 4"}


async def test_a_second_process_cannot_open_a_store_in_use(tmp_path: Path) -> None:
    config = store_config(tmp_path / "data")
    async with open_store(config, Logger(level="error"), expiry_interval=None):
        with pytest.raises(StoreError, match="in use"):
            async with open_store(config, Logger(level="error"), expiry_interval=None):
                pass
    async with open_store(config, Logger(level="error"), expiry_interval=None):
        pass  # free again once closed
