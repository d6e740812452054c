"""A failing card: a write or fdatasync that fails never becomes an acknowledgement, the
storage problem is reported until a write succeeds again, and the store goes on by itself."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
import trio

from relay.log import Logger
from relay.store import StoreError, open_store
from relay.store import segments as segments_module
from tests.conditions.test_disk_full import bodies, imap, send, status_problems
from tests.helpers import (
    deliver_to,
    make_account,
    require_tool,
    start_relay_process,
    stop_relay_process,
)
from tests.policy.corpus import armor, new_packet, pgp_mime, pkesk_v6
from tests.powercut import harness
from tests.store.helpers import Clock, addr, store_config

PASSWORD = "correct-horse-1"


def message(n: int) -> bytes:
    return f"Subject: {n}\r\n\r\nhello {n}\r\n".encode()


def encrypted(sender: str, n: int) -> bytes:
    payload = bytes([2, 9, 2, 16]) + n.to_bytes(4, "big") + os.urandom(4000)
    return pgp_mime(armor(pkesk_v6() + new_packet(18, payload)), sender=sender)


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


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="/dev/fuse is missing: no FUSE here")
async def test_a_card_that_fails_writes_mid_load_gets_no_acknowledgement(tmp_path: Path) -> None:
    """The relay on powercutfs; the card fails every write and sync for a while (SIGUSR2)."""
    require_tool("fusermount3")
    backing, mnt = tmp_path / "backing", tmp_path / "mnt"
    backing.mkdir()
    mnt.mkdir()
    card = harness.Mount(backing, mnt, tmp_path / "fs.log", ignore_fsync=None)
    card.mount(torn_seed=None)
    try:
        config = harness.relay_config(mnt / "data")
        relay = start_relay_process(config, tmp_path / "relay.toml")
        alice, bob = (f"{n}@{relay.domain}" for n in ("alice0001", "bob000001"))
        try:
            for who in (alice, bob):
                await trio.to_thread.run_sync(lambda w=who: imap(relay, w).logout())
            sent = [encrypted(alice, n) for n in range(10)]
            replies = []
            for n, data in enumerate(sent):
                if n == 3:
                    card.process.send_signal(signal.SIGUSR2)  # the card starts failing
                    await trio.sleep(0.2)
                if n == 7:
                    card.process.send_signal(signal.SIGUSR2)  # and works again
                    await trio.sleep(0.2)
                replies.append(await trio.to_thread.run_sync(send, relay, alice, bob, data))
                if n == 6:
                    problems = await status_problems(config)
                    assert "storage write failed: Input/output error" in problems, replies
            codes = [code for code, _ in replies]
            assert codes == [250] * 3 + [451] * 4 + [250] * 3, replies
            assert replies[3] == (451, b"4.3.0 Error: queue file write error")
            assert await status_problems(config) == []
            acknowledged = [d for d, (code, _) in zip(sent, replies, strict=True) if code == 250]
            assert await trio.to_thread.run_sync(bodies, relay, bob) == [
                d.split(b"\r\n\r\n", 1)[1] for d in acknowledged
            ]
        finally:
            stop_relay_process(relay)
    finally:
        card.unmount()
