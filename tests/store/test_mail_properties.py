"""Property tests: random sequences of IMAP operations (with restarts) against a simple model.

Invariants: UIDVALIDITY of a living mailbox never changes; uids strictly increase and are never
reused; uidnext is above every uid ever given; flags and bodies are what the model says;
HIGHESTMODSEQ never goes down and is at least every message's modseq; quota usage is the sum of
the sizes; everything is the same after a restart (the index replayed from the log).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.log import Logger
from relay.store import MailboxError, NoSuchMailbox, Store, open_store
from tests.helpers import deliver_to, make_account
from tests.store.conftest import PASSWORD
from tests.store.helpers import Clock, addr, store_config

A = addr("property1")
NAMES = ["INBOX", "Archive", "DeltaChat"]
FLAGS = ["\\Seen", "\\Deleted", "\\Flagged", "$Label"]

uid_picks = st.lists(st.integers(1, 12), max_size=4)
flag_sets = st.sets(st.sampled_from(FLAGS), max_size=3)
ops = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(NAMES), flag_sets, st.binary(max_size=300)),
    st.tuples(st.just("deliver"), st.binary(min_size=1, max_size=300)),
    st.tuples(
        st.just("flags"),
        st.sampled_from(NAMES),
        uid_picks,
        flag_sets,
        st.sampled_from(["add", "remove", "replace"]),
    ),
    st.tuples(st.just("expunge"), st.sampled_from(NAMES), st.none() | uid_picks),
    st.tuples(st.just("copy"), st.sampled_from(NAMES), uid_picks, st.sampled_from(NAMES)),
    st.tuples(st.just("move"), st.sampled_from(NAMES), uid_picks, st.sampled_from(NAMES)),
    st.tuples(st.just("create"), st.sampled_from(NAMES)),
    st.tuples(st.just("delete"), st.sampled_from(NAMES)),
    st.tuples(st.just("restart")),
)


@dataclass
class Box:
    uidvalidity: int = 0
    highest_uid: int = 0
    modseq: int = 0
    msgs: dict[int, tuple[frozenset[str], bytes]] = field(default_factory=dict)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(ops, min_size=1, max_size=25))
def test_random_operation_sequences_keep_imap_invariants(sequence: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as d:
        trio.run(run_sequence, Path(d), sequence)


async def run_sequence(data_dir: Path, sequence: list[tuple]) -> None:
    config = store_config(data_dir)
    clock = Clock()
    model: dict[str, Box] = {"INBOX": Box()}
    uidvalidities_seen: set[int] = set()
    i = 0
    while i < len(sequence):
        async with open_store(
            config,
            Logger(level="error"),
            **clock.store_clocks(),
            expiry_interval=None,
            segment_size=4096,
        ) as store:
            assert await make_account(store, A, PASSWORD)
            await check(store, model, uidvalidities_seen)
            while i < len(sequence):
                op = sequence[i]
                i += 1
                clock.now += 1
                if op[0] == "restart":
                    break
                await apply(store, model, op)
                await check(store, model, uidvalidities_seen)


async def apply(store: Store, model: dict[str, Box], op: tuple) -> None:
    kind = op[0]
    if kind == "append":
        _, name, flags, data = op
        if name not in model:
            try:
                await store.append(A, name, data, flags=flags)
            except NoSuchMailbox:
                return
            raise AssertionError("append to a missing mailbox worked")
        uidvalidity, uid = await store.append(A, name, data, flags=flags)
        box = model[name]
        assert uidvalidity == box.uidvalidity and uid > box.highest_uid
        box.highest_uid = uid
        box.msgs[uid] = (frozenset(flags), data)
    elif kind == "deliver":
        await deliver_to(store, [A], op[1])
        box = model["INBOX"]
        box.highest_uid += 1  # the next uid is exactly one above the last one
        box.msgs[box.highest_uid] = (frozenset(), op[1])
    elif kind == "flags":
        _, name, uids, flags, mode = op
        if name not in model:
            return
        metas = await store.set_flags(A, name, uids, flags, mode)
        box = model[name]
        for uid in set(uids) & set(box.msgs):
            old, data = box.msgs[uid]
            new = {"add": old | flags, "remove": old - flags, "replace": frozenset(flags)}[mode]
            box.msgs[uid] = (frozenset(new), data)
        assert {m.uid: m.flags for m in metas} == {
            u: box.msgs[u][0] for u in set(uids) & set(box.msgs)
        }
    elif kind == "expunge":
        _, name, uids = op
        if name not in model:
            return
        box = model[name]
        if uids is None:
            expected = sorted(u for u, (f, _) in box.msgs.items() if "\\Deleted" in f)
        else:
            expected = sorted(set(uids) & set(box.msgs))
        assert await store.expunge(A, name, uids) == expected
        for u in expected:
            del box.msgs[u]
    elif kind in ("copy", "move"):
        _, src, uids, dst = op
        if src not in model or dst not in model or (kind == "move" and src == dst):
            return
        fn = store.copy if kind == "copy" else store.move
        pairs = await fn(A, src, uids, dst)
        moving = sorted(set(uids) & set(model[src].msgs))
        assert [s for s, _ in pairs] == moving
        for s, d in pairs:
            assert d > model[dst].highest_uid
            model[dst].highest_uid = d
            model[dst].msgs[d] = model[src].msgs[s]
        if kind == "move":
            for s in moving:
                del model[src].msgs[s]
    elif kind == "create":
        name = op[1]
        if name in model:
            try:
                await store.create_mailbox(A, name)
            except MailboxError:
                return
            raise AssertionError("created a mailbox twice")
        await store.create_mailbox(A, name)
        model[name] = Box()
    elif kind == "delete":
        name = op[1]
        if name == "INBOX" or name not in model:
            try:
                await store.delete_mailbox(A, name)
            except MailboxError:
                return
            raise AssertionError("deleted INBOX or a missing mailbox")
        await store.delete_mailbox(A, name)
        del model[name]


async def check(store: Store, model: dict[str, Box], uidvalidities_seen: set[int]) -> None:
    names = {m.name for m in await store.list_mailboxes(A)}
    assert names == set(model)
    total = 0
    for name, box in model.items():
        snap = await store.snapshot(A, name)
        if box.uidvalidity == 0:  # first sight of this mailbox: a uidvalidity never used before
            assert snap.uidvalidity not in uidvalidities_seen
            uidvalidities_seen.add(snap.uidvalidity)
            box.uidvalidity = snap.uidvalidity
        assert snap.uidvalidity == box.uidvalidity
        uids = [m.uid for m in snap.messages]
        assert uids == sorted(box.msgs)
        assert snap.uidnext > box.highest_uid
        assert snap.highestmodseq >= box.modseq
        box.modseq = snap.highestmodseq
        for meta in snap.messages:
            flags, data = box.msgs[meta.uid]
            assert meta.flags == flags
            assert meta.size == len(data)
            assert meta.modseq <= snap.highestmodseq
            assert await store.read(A, name, meta.uid) == data
            total += meta.size
    assert await store.quota_usage(A) == total
