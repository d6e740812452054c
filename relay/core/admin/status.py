"""What the relay is doing now: /admin/status (also the display's `status`), /admin/storage and
/admin/overview. The status carries madmail's keys (users, imap, sent/outbound/received counts)
next to ours (health, push, TURN, iroh), so either dashboard can read it."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay.store.clock import clock_confirmed
from relay.turn.service import RUNNING as TURN_RUNNING

if TYPE_CHECKING:
    from relay.app import App

DISK_DEGRADED_PERCENT = 90
IMAP_SERVICES = ("imap", "imaps")


async def status(app: App) -> dict[str, Any]:
    config = app.config
    problems: list[str] = []
    state = "ok"
    try:
        accounts = await app.store.account_count()
        queued = len(await app.store.queue_list())
    except Exception as e:  # the display must still be able to say what is wrong
        app.log.exception("admin-status-store", e)
        accounts, queued, state = -1, -1, "error"
        problems.append("store unavailable")
    # The display shows the first problem, so "data disk full" comes before the rest.
    problems += app.store.storage_problems()
    disk = disk_used_percent(config.data_dir)
    if disk >= DISK_DEGRADED_PERCENT and "data disk full" not in problems:
        problems.append(f"data disk {disk}% full")
    if not clock_confirmed():
        problems.append("clock not synced")
    if problems and state == "ok":
        state = "degraded"
    metrics = app.metrics
    return {
        "name": socket.gethostname(),
        "domain": config.mail_domain,
        "address_domain": config.address_domain,
        "lan": config.is_lan,
        "accounts": accounts,
        "users": accounts,
        "uptime": round(time.monotonic() - app.started_at),
        "health": {"state": state, "problems": problems},
        "disk_used_percent": disk,
        "queue": {"messages": queued},
        "imap": {
            "connections": sum(metrics.connections[s] for s in IMAP_SERVICES),
            "unique_ips": len(
                set().union(*(metrics.clients.get(s, {}).keys() for s in IMAP_SERVICES))
            ),
        },
        **metrics.summary(),
        "push": push_status(app),
        "turn": turn_status(app),
        "iroh": app.iroh.status(),
        "shadowsocks": app.shadowsocks.status(_port(app, "shadowsocks")),
        "ports": config.listen.services(),
        "update": app.update.status(),
    }


def _port(app: App, service: str) -> int | None:
    registry = app.services
    return registry.ports.get(service) if registry is not None else None


async def storage(app: App) -> dict[str, Any]:
    config = app.config
    try:
        usage = shutil.disk_usage(config.data_dir)
        disk = {
            "total": usage.total,
            "used": usage.used,
            "available": usage.free,
            "percent": round(100 * usage.used / usage.total, 1) if usage.total else 0,
        }
    except OSError:
        disk = {"total": 0, "used": 0, "available": 0, "percent": 0}
    size = directory_size(config.data_dir)
    return {
        "disk": disk,
        "state_dir": {"path": str(config.data_dir), "size": size},
        "database": {"driver": "embedded", "size": size},
        "problems": app.store.storage_problems(),
    }


def directory_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed meanwhile
    return total


def disk_used_percent(path: Path) -> int:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return 0
    return round(100 * usage.used / usage.total) if usage.total else 0


def push_status(app: App) -> dict[str, Any]:
    """Notifications waiting to be sent, sent and given up since the start; off: not running."""
    notifier = app.push
    if notifier is None:
        return {"running": False}
    return {
        "running": True,
        "pending": notifier.pending,
        "sent": notifier.sent,
        "dropped": notifier.dropped,
    }


def turn_status(app: App) -> dict[str, Any]:
    """The built-in TURN server: its UDP port, allocations now, relayed since the start."""
    server = TURN_RUNNING.get(app.config.data_dir)
    if server is None:
        return {"running": False, "external": app.config.turn.external or None, "relays": 0}
    stats = server.engine.stats
    allocations = len(server.engine.by_client)
    return {
        "running": True,
        "port": server.port,
        "allocations": allocations,
        "relays": allocations,
        "packets_relayed": stats.packets_relayed,
        "bytes_relayed": stats.bytes_relayed,
    }
