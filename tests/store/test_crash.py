"""Crash test: SIGKILL a child that appends as fast as it can, at random moments, many times.

After every kill the store must open cleanly, hold every acknowledged message byte for byte
exactly once, show no expunged message again, never reuse a uid, and be self-consistent.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import trio

from relay.log import Logger
from relay.store import open_store
from tests.store.crash_child import ACCOUNT, body
from tests.store.helpers import store_config

ROUNDS = 50
WRITERS = 4
REPO = Path(__file__).resolve().parents[2]


def run_child(data_dir: Path, seed: str, rng: random.Random) -> list[str]:
    """Start the child, SIGKILL it once it has acknowledged a random number of operations (a
    moment chosen by what it did, not by the clock, so a slow machine kills just as often
    mid-write), return its lines."""
    kill_after = rng.randint(1, 40)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.store.crash_child", str(data_dir), str(WRITERS), seed],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reached = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        acks = 0
        for line in proc.stdout:
            lines.append(line.strip())
            acks += line.startswith("ack ")
            if acks >= kill_after:
                reached.set()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert reached.wait(300), f"the child did not get to {kill_after} acks: {lines[-3:]}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
    assert lines[0] == "ready", lines[:3]
    return lines[1:]


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    rng = random.Random(1234)
    live: dict[int, str] = {}  # uid -> id of acknowledged, not deleted messages
    deleted: set[int] = set()
    ids_seen: set[str] = set()
    max_uid = 0
    totals = {"acked": 0, "deleted": 0, "unacked_present": 0, "bytes_checked": 0}

    for round_no in range(ROUNDS):
        fresh: dict[int, str] = {}
        maybe_deleted: set[int] = set()
        for line in run_child(data_dir, f"r{round_no}", rng):
            kind, *rest = line.split()
            if kind == "ack":
                uid = int(rest[1])
                assert uid > max_uid, "uid reused after a crash"
                fresh[uid] = rest[0]
            elif kind == "expunging":
                maybe_deleted.add(int(rest[0]))
            elif kind == "del":
                deleted.add(int(rest[0]))
                maybe_deleted.discard(int(rest[0]))
        totals["acked"] += len(fresh)
        live.update(fresh)
        for uid in deleted:
            live.pop(uid, None)
        last_round = round_no == ROUNDS - 1
        sample = set(rng.sample(sorted(live), min(50, len(live))))
        check = live if last_round else {u: live[u] for u in set(fresh) | sample if u in live}
        found = trio.run(verify, data_dir, live, check, deleted, maybe_deleted, ids_seen)
        deleted |= found["gone"]
        for uid in found["gone"]:
            live.pop(uid, None)
        totals["unacked_present"] += len(found["unacked"])
        totals["bytes_checked"] += found["bytes"]
        for uid, msg_id in found["unacked"].items():
            live[uid] = msg_id  # durable though never acknowledged: now it must stay
        ids_seen.update(live.values())
        max_uid = max(found["max_uid"], max_uid)
    totals["deleted"] = len(deleted)
    print(f"crash test: {ROUNDS} SIGKILL rounds, {len(live)} messages live at the end, {totals}")
    assert totals["acked"] >= ROUNDS  # every round was killed after at least one ack


async def verify(
    data_dir: Path,
    live: dict[int, str],
    check: dict[int, str],
    deleted: set[int],
    maybe_deleted: set[int],
    ids_seen: set[str],
) -> dict:
    config = store_config(data_dir, max_mailbox_size=1 << 40)
    async with open_store(config, Logger(level="error"), segment_size=256 << 10) as store:
        snap = await store.snapshot(ACCOUNT, "INBOX")
        uids = [m.uid for m in snap.messages]
        assert uids == sorted(set(uids)), "uids not strictly increasing"
        assert not uids or snap.uidnext > uids[-1]
        present = set(uids)
        gone = maybe_deleted - present  # expunge was durable though never acknowledged
        missing = set(live) - present - gone
        assert not missing, f"acknowledged messages lost: {sorted(missing)[:10]}"
        assert not (present & deleted), "an expunged message came back"
        sizes = {m.uid: m.size for m in snap.messages}
        assert await store.quota_usage(ACCOUNT) == sum(sizes.values())
        checked = 0
        for uid, msg_id in check.items():
            if uid in gone:
                continue
            data = await store.read(ACCOUNT, "INBOX", uid)
            assert data == body(msg_id), f"uid {uid} differs from what was acknowledged"
            assert sizes[uid] == len(data)
            checked += len(data)
        unacked = {}
        for uid in present - set(live):
            data = await store.read(ACCOUNT, "INBOX", uid)
            msg_id = data.split(b"\r\n", 1)[0].removeprefix(b"X-Id: ").decode()
            assert data == body(msg_id), "a half-written message is visible"
            assert msg_id not in ids_seen and msg_id not in live.values(), "duplicate message"
            unacked[uid] = msg_id
        return {"gone": gone, "unacked": unacked, "bytes": checked, "max_uid": snap.uidnext - 1}
