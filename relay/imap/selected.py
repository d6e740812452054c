"""The selected mailbox as one session sees it: the UID <-> sequence number map and the
changes (new mail, expunges, flag changes) still to be told to this client.

Changes arrive from store.watch(); this class turns them into untagged responses at the points
where IMAP allows them (RFC 3501 §7.4.1: no EXPUNGE during FETCH, STORE or SEARCH).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable

from relay.store import MailboxChange, MailboxSnapshot, MessageMeta

from . import respond
from .respond import Atom
from .seqset import SeqSet


class SelectedMailbox:
    def __init__(self, name: str, snap: MailboxSnapshot, *, readonly: bool) -> None:
        self.name = name
        self.readonly = readonly
        self.uidvalidity = snap.uidvalidity
        self.uids = array("Q", (m.uid for m in snap.messages))  # compact: 8 bytes a message
        self.condstore = False  # the client enabled CONDSTORE: FETCH responses carry MODSEQ
        self._pending_expunge: set[int] = set()
        self._pending_flags: set[int] = set()
        self._exists_told = len(self.uids)
        self._resync = False
        # Flag changes this session made itself (uid -> (modseq, flags)): not echoed back.
        self._own_changes: dict[int, tuple[int, frozenset[str]]] = {}

    # -- the sequence number map ------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def resolve(self, seqset: SeqSet, *, uid: bool) -> list[int]:
        """The UIDs a sequence set names, ascending."""
        if uid:
            largest = self.uids[-1] if self.uids else 0
            return [self.uids[i] for i in seqset.select(self.uids, largest)]
        count = len(self.uids)
        picked: set[int] = set()
        for lo, hi in seqset.bounds(count):
            picked.update(range(max(lo, 1), min(hi, count) + 1))
        return [self.uids[s - 1] for s in sorted(picked)]

    def seq_range_valid(self, seqset: SeqSet) -> bool:
        """Message sequence numbers beyond EXISTS are an error (RFC 3501 §9 seq-number)."""
        return all(hi <= len(self.uids) for _, hi in seqset.bounds(len(self.uids)))

    # -- changes from other sessions --------------------------------------------------------

    def note_change(self, change: MailboxChange) -> None:
        if change.kind == "resync":
            self._resync = True
        elif change.mailbox != self.name:
            return
        elif change.kind == "exists":
            for uid in change.uids:
                if not self.uids or uid > self.uids[-1]:
                    self.uids.append(uid)
        elif change.kind == "expunge":
            self._pending_expunge.update(u for u in change.uids if self.seq_of(u) is not None)
        elif change.kind == "flags":
            self._pending_flags.update(change.uids)

    def note_own_flags(self, metas: Iterable[MessageMeta]) -> None:
        for m in metas:
            self._own_changes[m.uid] = (m.modseq, m.flags)

    @property
    def needs_snapshot(self) -> bool:
        return self._resync or bool(self._pending_flags)

    def apply_snapshot(self, snap: MailboxSnapshot) -> list[bytes]:
        """After a resync or flag change: reconcile with the store, return FETCH responses."""
        metas = {m.uid: m for m in snap.messages}
        out: list[bytes] = []
        if self._resync:
            known = set(self.uids)
            self._pending_expunge.update(u for u in known if u not in metas)
            for m in snap.messages:
                if m.uid not in known and (not self.uids or m.uid > self.uids[-1]):
                    self.uids.append(m.uid)
            # Without the event details, tell the client every message's flags again.
            self._pending_flags.update(u for u in known if u in metas)
            self._resync = False
        for uid in sorted(self._pending_flags):
            meta = metas.get(uid)
            seq = self.seq_of(uid)
            if meta is None or seq is None or uid in self._pending_expunge:
                continue
            if self._own_changes.pop(uid, None) == (meta.modseq, meta.flags):
                continue
            out.append(self.flags_response(seq, meta))
        self._pending_flags.clear()
        return out

    def flags_response(self, seq: int, meta: MessageMeta, *, uid: bool = True) -> bytes:
        items: list = []
        if uid:
            items += [Atom("UID"), meta.uid]
        items += [Atom("FLAGS"), respond.flag_list(meta.flags)]
        if self.condstore:
            items += [Atom("MODSEQ"), (meta.modseq,)]
        return respond.untagged(seq, Atom("FETCH"), items)

    def forget(self, uids: Iterable[int]) -> list[bytes]:
        """Remove expunged UIDs now, returning their EXPUNGE responses (highest first)."""
        out = []
        for uid in sorted(set(uids), reverse=True):
            seq = self.seq_of(uid)
            if seq is None:
                continue
            del self.uids[seq - 1]
            self._own_changes.pop(uid, None)
            if seq > self._exists_told:
                continue  # arrived and left before the client heard of it: nothing to say
            self._exists_told -= 1  # the client counts EXPUNGE responses itself
            out.append(respond.untagged(seq, Atom("EXPUNGE")))
        self._pending_expunge.difference_update(uids)
        return out

    def pending_responses(self, *, allow_expunge: bool) -> list[bytes]:
        """Untagged responses for what changed since the last call."""
        out: list[bytes] = []
        if allow_expunge and self._pending_expunge:
            out += self.forget(list(self._pending_expunge))
        if len(self.uids) != self._exists_told:
            self._exists_told = len(self.uids)
            out.append(respond.untagged(len(self.uids), Atom("EXISTS")))
        return out
