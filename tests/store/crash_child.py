"""Child process of the crash test: appends (and sometimes expunges) as fast as it can and
reports every acknowledged operation on stdout, until the parent SIGKILLs it.

argv: data_dir writers seed
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import trio

from relay.log import Logger
from relay.store import open_store
from tests.helpers import make_account
from tests.store.helpers import addr, store_config

ACCOUNT = addr("crashtest")
PASSWORD = "crash-test-password"


def body(msg_id: str) -> bytes:
    """Deterministic content for an id, 200 B .. 24 KiB, so the parent can check every byte."""
    seed = hashlib.sha256(msg_id.encode()).digest()
    size = 200 + int.from_bytes(seed[:2], "big") % 24000
    filler = (seed * (size // 32 + 1))[:size]
    return b"X-Id: " + msg_id.encode() + b"\r\n\r\n" + filler


async def main() -> None:
    data_dir, writers, seed = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    config = store_config(data_dir, max_mailbox_size=1 << 40)
    out = sys.stdout

    def report(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    async with open_store(config, Logger(level="error"), segment_size=256 << 10) as store:
        assert await make_account(store, ACCOUNT, PASSWORD)
        report("ready")

        async def writer(n: int) -> None:
            rng = random.Random(f"{seed}-{n}")
            mine: list[int] = []
            i = 0
            while True:
                msg_id = f"{seed}-{n}-{i}"
                i += 1
                _, uid = await store.append(ACCOUNT, "INBOX", body(msg_id))
                report(f"ack {msg_id} {uid}")
                mine.append(uid)
                if len(mine) > 3 and rng.random() < 0.2:
                    victim = mine.pop(rng.randrange(len(mine)))
                    report(f"expunging {victim}")  # from here it may be gone after a crash
                    await store.expunge(ACCOUNT, "INBOX", [victim])
                    report(f"del {victim}")

        async with trio.open_nursery() as nursery:
            for n in range(writers):
                nursery.start_soon(writer, n)


if __name__ == "__main__":
    trio.run(main)
