"""The writer checkpoints SQLite's WAL itself (SQLite's automatic checkpoint is off: it would run
inside a COMMIT on the event loop). On an appliance a WAL that is never checkpointed would grow
until the data partition is full."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.log import Logger
from relay.store import index, open_store
from tests.helpers import deliver_to, make_account
from tests.store.conftest import PASSWORD
from tests.store.helpers import addr, store_config

A = addr("walcheck1")
PAGES = 40


def wal_pages(data_dir: Path) -> int:
    size = (data_dir / "store" / "index.sqlite-wal").stat().st_size
    return max(0, size - index.WAL_HEADER) // (1024 + index.FRAME_HEADER)


async def test_the_wal_is_checkpointed_when_it_holds_the_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index, "CHECKPOINT_PAGES", PAGES)
    data_dir = tmp_path / "data"
    config = store_config(data_dir)
    high = 0
    async with open_store(config, Logger(level="error"), expiry_interval=None) as store:
        assert await make_account(store, A, PASSWORD)
        for n in range(200):
            await deliver_to(store, [A], b"message %d" % n)
            high = max(high, wal_pages(data_dir))
        assert len((await store.snapshot(A, "INBOX")).messages) == 200
    # It grows up to the threshold (a batch adds a few pages), and is emptied there.
    assert PAGES // 2 <= high < PAGES + 20
    async with open_store(config, Logger(level="error"), expiry_interval=None) as store:
        snapshot = await store.snapshot(A, "INBOX")
        assert len(snapshot.messages) == 200
        assert await store.read(A, "INBOX", snapshot.messages[-1].uid) == b"message 199"
