"""The PGP gate, run where it cannot hold up the event loop.

The checks (relay.policy.checks) are pure and linear in the message, but a hostile message
can still make them take a while (many MIME parts, many OpenPGP packets). Up to INLINE_BYTES
they run inline: the worst case there stays within a few tens of milliseconds, and a worker
thread would cost more than the check for the chat messages that make up most mail. Larger
messages go to a worker thread (App.cpu_work).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from relay.policy.checks import Decision

if TYPE_CHECKING:
    from relay.app import App

INLINE_BYTES = 16 * 1024

Check = Callable[[bytes, str, list[str]], Decision]


async def decide(
    app: App, check: Check, content: bytes, sender: str, recipients: list[str]
) -> Decision:
    if len(content) <= INLINE_BYTES:
        return check(content, sender, recipients)
    return await trio.to_thread.run_sync(check, content, sender, recipients, limiter=app.cpu_work)
