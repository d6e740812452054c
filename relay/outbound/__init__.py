"""Outbound federation: mail to other relays and mail servers.

`run_outbound` (a service of the registry) drains the store's queue: MX lookup, /mxdeliv over
HTTPS, SMTP with STARTTLS as fallback, DKIM signing, retries, bounces. Incoming federation is
relay.core.inbound (rules), relay.web.mxdeliv (HTTP) and relay.smtp (port 25).
"""

from __future__ import annotations

from typing import Any

import trio

from relay.outbound.worker import Outbound


async def run_outbound(
    app: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the queue worker until cancelled; meanwhile `app.on_queued()` wakes it."""
    worker = Outbound(app)
    app.on_queued = app.store.on_queue_kick = worker.kick
    try:
        await worker.run(task_status=task_status)
    finally:
        app.on_queued = app.store.on_queue_kick = lambda: None


def kick(app: Any) -> None:
    """Call after app.store.enqueue(): the worker looks at the queue at once instead of soon."""
    app.on_queued()
