"""A failing card: a write or fdatasync that fails never becomes an acknowledgement, the
storage problem is reported until a write succeeds again, and the store goes on by itself."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from relay.log import Logger
from relay.store import StoreError, open_store
from relay.store import segments as segments_module
from tests.helpers import deliver_to, make_account
from tests.store.helpers import Clock, addr, store_config

PASSWORD = "correct-horse-1"


def message(n: int) -> bytes:
    return f"Subject: {n}\r\n\r\nhello {n}\r\n".encode()


async def test_a_failed_fdatasync_is_no_acknowledgement_and_the_store_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = store_config(tmp_path / "data")
    clock = Clock()
    bob = addr("bob000001")
    real_fdatasync = os.fdatasync

    def card_error(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    async with open_store(
        config, Logger(level="error"), **clock.store_clocks(), expiry_interval=None
    ) as s:
        assert await make_account(s, bob, PASSWORD)
        await deliver_to(s, [bob], message(1))
        monkeypatch.setattr(segments_module.os, "fdatasync", card_error)
        with pytest.raises(StoreError, match="Input/output error"):
            await deliver_to(s, [bob], message(2))
        assert s.storage_problems() == ["storage write failed: Input/output error"]
        assert [m.uid for m in (await s.snapshot(bob, "INBOX")).messages] == [1]
        monkeypatch.setattr(segments_module.os, "fdatasync", real_fdatasync)
        await deliver_to(s, [bob], message(3))  # the card works again: so does the store
        assert s.storage_problems() == []
    async with open_store(
        config, Logger(level="error"), **clock.store_clocks(), expiry_interval=None
    ) as s:
        bodies = [
            await s.read(bob, "INBOX", m.uid) for m in (await s.snapshot(bob, "INBOX")).messages
        ]
        assert [b.split(b"\r\n\r\n")[1] for b in bodies] == [b"hello 1\r\n", b"hello 3\r\n"]
