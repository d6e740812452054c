"""After a rolled-back update the older relay opens a store the newer one wrote (both root slots
share /data): it opens what it can read, and refuses, untouched, what it cannot
(relay/store/compat.py). "Newer" is a FORMAT marker with higher numbers, as a later version
writes it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from relay.log import Logger
from relay.store import StoreError, open_store
from relay.store.compat import FORMAT, READABLE_BY, StoreTooNew
from tests.helpers import deliver_to, make_account
from tests.store.conftest import PASSWORD
from tests.store.helpers import addr, store_config

A = addr("compat1")


async def a_store_with_mail(data_dir: Path) -> Path:
    async with open_store(store_config(data_dir), Logger(level="error"), expiry_interval=None) as s:
        assert await make_account(s, A, PASSWORD)
        await deliver_to(s, [A], b"written before the update")
    return data_dir / "store"


async def bodies(data_dir: Path) -> list[bytes]:
    async with open_store(store_config(data_dir), Logger(level="error"), expiry_interval=None) as s:
        snap = await s.snapshot(A, "INBOX")
        return [await s.read(A, "INBOX", m.uid) for m in snap.messages]


def marker(store_dir: Path) -> dict[str, int]:
    return json.loads((store_dir / "FORMAT").read_text())


def files(store_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(store_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store_dir.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


async def test_a_store_is_marked_with_the_format_of_its_relay(tmp_path: Path) -> None:
    store_dir = await a_store_with_mail(tmp_path / "data")
    assert marker(store_dir) == {"format": FORMAT, "readable_by": READABLE_BY}


async def test_a_store_from_before_the_marker_opens_and_is_claimed(tmp_path: Path) -> None:
    store_dir = await a_store_with_mail(tmp_path / "data")
    (store_dir / "FORMAT").unlink()  # as every store made before this version
    assert await bodies(tmp_path / "data") == [b"written before the update"]
    assert marker(store_dir) == {"format": FORMAT, "readable_by": READABLE_BY}


async def test_a_newer_store_this_relay_can_read_opens_and_keeps_its_marker(
    tmp_path: Path,
) -> None:
    store_dir = await a_store_with_mail(tmp_path / "data")
    newer = {"format": FORMAT + 1, "readable_by": FORMAT}  # the newer version kept us working
    (store_dir / "FORMAT").write_text(json.dumps(newer))
    assert await bodies(tmp_path / "data") == [b"written before the update"]
    assert marker(store_dir) == newer  # still the newer one's, for its next start


async def test_a_newer_store_this_relay_cannot_read_is_refused_untouched(tmp_path: Path) -> None:
    store_dir = await a_store_with_mail(tmp_path / "data")
    newer = {"format": FORMAT + 1, "readable_by": FORMAT + 1}
    (store_dir / "FORMAT").write_text(json.dumps(newer))
    before = files(store_dir)
    with pytest.raises(StoreTooNew, match=f"store format {FORMAT + 1}.*nothing has been changed"):
        await bodies(tmp_path / "data")
    assert files(store_dir) == before
    # The newer relay, started again, finds its data as it left it: here, once it is "back".
    (store_dir / "FORMAT").write_text(json.dumps({"format": FORMAT, "readable_by": FORMAT}))
    assert await bodies(tmp_path / "data") == [b"written before the update"]


async def test_an_unreadable_marker_is_refused_not_overwritten(tmp_path: Path) -> None:
    store_dir = await a_store_with_mail(tmp_path / "data")
    (store_dir / "FORMAT").write_text('{"format": 3')
    with pytest.raises(StoreError, match="FORMAT cannot be read"):
        await bodies(tmp_path / "data")
    assert (store_dir / "FORMAT").read_text() == '{"format": 3'


async def test_an_empty_marker_counts_as_none(tmp_path: Path) -> None:
    """What a disk that lies about fsync leaves after a cut right after the marker was made."""
    store_dir = await a_store_with_mail(tmp_path / "data")
    (store_dir / "FORMAT").write_bytes(b"")
    assert await bodies(tmp_path / "data") == [b"written before the update"]
    assert marker(store_dir) == {"format": FORMAT, "readable_by": READABLE_BY}
