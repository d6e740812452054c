"""Federation: mail to and from other relays and mail servers.

Outbound: `run_outbound` drains the store's queue (MX lookup, /mxdeliv over HTTPS, SMTP with
STARTTLS as fallback, DKIM signing, retries, bounces). Inbound: `inbound.mxdeliv` for the web
server's POST /mxdeliv and `origin.origin_check` for the SMTP MX session.
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
    app.on_queued = worker.kick
    try:
        await worker.run(task_status=task_status)
    finally:
        app.on_queued = lambda: None


def kick(app: Any) -> None:
    """Call after app.store.enqueue(): the worker looks at the queue at once instead of soon."""
    app.on_queued()
