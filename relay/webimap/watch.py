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
    as long as it runs (a WebSocket's pushes). One subscription throughout: after a push it
    waits for the next notification without listing the mailbox again."""
    while True:
        async with c.app.store.watch(c.addr) as changes:
            found = await summaries_since(c, mailbox, since_uid)
            while True:
                if found:
                    await deliver(found)
                    since_uid = max(since_uid, *(s["uid"] for s in found))
                arrival = await _next_arrival(changes, mailbox)
                if arrival is None:
                    break  # the subscription ended: subscribe again, then list again
                found = await summaries_since(c, mailbox, since_uid, arrival)


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
