"""Federation: mail to and from other relays and mail servers.

Outbound: `run_outbound` drains the store's queue (MX lookup, /mxdeliv over HTTPS, SMTP with
STARTTLS as fallback, DKIM signing, retries, bounces). Inbound: `inbound.mxdeliv` for the web
server's POST /mxdeliv and `origin.origin_check` for the SMTP MX session.
"""

from __future__ import annotations

from typing import Any

import trio

from relay.federation.outbound import Outbound

_workers: dict[int, Outbound] = {}  # id(app) -> its worker, for kick()


async def run_outbound(
    app: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the queue worker until cancelled."""
    worker = Outbound(app)
    _workers[id(app)] = worker
    try:
        await worker.run(task_status=task_status)
    finally:
        _workers.pop(id(app), None)


def start(app: Any, nursery: trio.Nursery) -> None:
    nursery.start_soon(run_outbound, app)


def kick(app: Any) -> None:
    """Call after app.store.enqueue(): the worker looks at the queue at once instead of soon."""
    worker = _workers.get(id(app))
    if worker is not None:
        worker.kick()
