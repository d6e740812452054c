"""Per-relay IMAP bookkeeping: open connections per IP and per account."""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.app import App
from relay.ratelimit import ConnectionCounter


@dataclass
class ConnectionLimits:
    per_ip: ConnectionCounter = field(default_factory=ConnectionCounter)
    per_account: ConnectionCounter = field(default_factory=ConnectionCounter)


def limits_for(app: App) -> ConnectionLimits:
    return app.service_state("imap", ConnectionLimits)
