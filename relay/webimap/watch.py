"""Waiting for new mail: the store's change notifications (what wakes IMAP IDLE), no polling.

`wait_for_new()` subscribes first and lists second, so a delivery between the two is never
missed; it returns the summaries of the messages above a uid as soon as there are any. The
store ends a subscription whose reader fell behind (after a last "resync"): then it simply
subscribes again and lists again.
"""

from __future__ import annotations

import trio

from relay.store import MailboxChange

from .actions import Caller, Json, summaries_since


def same_mailbox(a: str, b: str) -> bool:
    """INBOX is case-insensitive, every other name exact (the store's rule)."""
    return a == b or (a.upper() == "INBOX" and b.upper() == "INBOX")


async def wait_for_new(c: Caller, mailbox: str, since_uid: int) -> list[Json]:
    while True:
        async with c.app.store.watch(c.addr) as changes:
            while True:
                found = await summaries_since(c, mailbox, since_uid)
                if found:
                    return found
                if not await _next_arrival(changes, mailbox):
                    break  # the subscription ended: subscribe again, then list again


async def _next_arrival(changes: trio.MemoryReceiveChannel[MailboxChange], mailbox: str) -> bool:
    """Wait for mail added to `mailbox` (or a resync); False when the subscription ended."""
    while True:
        try:
            change = await changes.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return False
        if change.kind == "resync" or (
            change.kind == "exists" and same_mailbox(change.mailbox, mailbox)
        ):
            return True
