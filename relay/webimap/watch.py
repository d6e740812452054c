"""Waiting for new mail: the store's change notifications (what wakes IMAP IDLE), no polling.

`wait_for_new()` (the long-poll) and `follow_new()` (a WebSocket's pushes) subscribe first and
list second, so a delivery between the two is never missed; the first returns the summaries of
the messages above a uid as soon as there are any, the second hands them on as they come. The
store ends a subscription whose reader fell behind (after a last "resync"): then it simply
subscribes again and lists again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from relay.store import MailboxChange

from . import actions, views
from .actions import Caller, Json, summaries_since


def same_mailbox(a: str, b: str) -> bool:
    """INBOX is case-insensitive, every other name exact (the store's rule)."""
    return a == b or (a.upper() == "INBOX" and b.upper() == "INBOX")


async def wait_for_new(c: Caller, mailbox: str, since_uid: int) -> list[Json]:
    while True:
        async with c.app.store.watch(c.addr) as changes:
            likely: tuple[int, ...] = ()
            while True:
                found = await summaries_since(c, mailbox, since_uid, likely)
                if found:
                    return found
                arrival = await _next_arrival(changes, mailbox)
                if arrival is None:
                    break  # the subscription ended: subscribe again, then list again
                likely = arrival


async def follow_new(
    c: Caller, mailbox: str, since_uid: int, deliver: Callable[[list[Json]], Awaitable[None]]
) -> None:
    """Hand `deliver` the summaries above `since_uid`, then those of every later arrival, for
    as long as it runs (a WebSocket's pushes). One subscription throughout. A delivery's
    notification carries what the push needs (the message's metadata and header), so a push
    costs no query; the mailbox's uids are followed here for the sequence numbers, as an IMAP
    session follows its selected mailbox. Anything else (a copy, a resync) lists again."""
    while True:
        async with c.app.store.watch(c.addr) as changes:
            uids, found = await _listing(c, mailbox, since_uid)
            while True:
                if found:
                    await deliver(found)
                    since_uid = max(since_uid, *(s["uid"] for s in found))
                    found = []
                try:
                    change = await changes.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    break  # the subscription ended: subscribe again, then list again
                if change.kind == "resync":
                    uids, found = await _listing(c, mailbox, since_uid)
                elif not same_mailbox(change.mailbox, mailbox):
                    continue
                elif change.kind == "expunge":
                    gone = set(change.uids)
                    uids = [u for u in uids if u not in gone]
                elif change.kind == "exists":
                    known = _announced(change, uids, since_uid)
                    if known is None:
                        uids, found = await _listing(c, mailbox, since_uid)
                    else:
                        found = known


def _announced(change: MailboxChange, uids: list[int], since_uid: int) -> list[Json] | None:
    """The summaries of the messages a delivery's notification describes; None if it does
    not describe them all (a copy or move: list the mailbox instead)."""
    if not change.uids or len(change.added) != len(change.uids):
        return None
    if not change.header.endswith((b"\r\n\r\n", b"\n\n")):
        return None  # a header too large to carry whole: read it from the store
    if uids and change.uids[0] <= uids[-1]:
        return None  # not after what we know: let a listing sort it out
    found = []
    for meta in change.added:
        uids.append(meta.uid)
        if meta.uid > since_uid:
            found.append(views.summary(meta, len(uids), change.header))
    return found


async def _listing(c: Caller, mailbox: str, since_uid: int) -> tuple[list[int], list[Json]]:
    """The mailbox's uids and the summaries above since_uid, from one snapshot."""
    snap = await actions.snapshot(c, mailbox)
    wanted = [(seq, m) for seq, m in enumerate(snap.messages, 1) if m.uid > since_uid]
    return [m.uid for m in snap.messages], await actions.summaries_of(c, mailbox, wanted)


async def _next_arrival(
    changes: trio.MemoryReceiveChannel[MailboxChange], mailbox: str
) -> tuple[int, ...] | None:
    """Wait for mail added to `mailbox` (or a resync): the uids the change names; None when
    the subscription ended."""
    while True:
        try:
            change = await changes.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None
        if change.kind == "resync":
            return ()
        if change.kind == "exists" and same_mailbox(change.mailbox, mailbox):
            return change.uids
