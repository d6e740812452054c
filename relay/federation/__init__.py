"""Federation: mail to and from other relays and mail servers.

Outbound: `run_outbound` drains the store's queue (MX lookup, /mxdeliv over HTTPS, SMTP with
STARTTLS as fallback, DKIM signing, retries, bounces). Inbound: `inbound.mxdeliv` for the web
server's POST /mxdeliv and `origin.origin_check` for the SMTP MX session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

from relay.federation.outbound import Outbound


@dataclass
class _State:
    worker: Outbound | None = None


def worker(app: Any) -> Outbound | None:
    """The running queue worker of this relay, if any."""
    return app.service_state("federation", _State).worker


async def run_outbound(
    app: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the queue worker until cancelled."""
    state = app.service_state("federation", _State)
    state.worker = Outbound(app)
    try:
        await state.worker.run(task_status=task_status)
    finally:
        state.worker = None


def start(app: Any, nursery: trio.Nursery) -> None:
    nursery.start_soon(run_outbound, app)


def kick(app: Any) -> None:
    """Call after app.store.enqueue(): the worker looks at the queue at once instead of soon."""
    running = worker(app)
    if running is not None:
        running.kick()
