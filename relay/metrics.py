"""The relay's counters, in memory only, for the admin API, the dashboard and `relay status`.

One registry per relay (App.metrics). Nothing here names a user: connections are counted per
service and client address only while they last, mail per direction, federation per peer domain
(what madmail's /admin/federation/servers shows). Counters start at zero with the process.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_PEERS = 1000  # peer domains remembered; the least recently active is forgotten beyond it


@dataclass
class PeerStats:
    """Deliveries to one peer domain, by transport ("http" is /mxdeliv, "smtp" port 25)."""

    success: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    successful_deliveries: int = 0  # recipients accepted
    latency_ms_total: float = 0.0
    last_active: float = 0.0  # wall clock, for display

    def as_dict(self) -> dict[str, Any]:
        attempts = sum(self.success.values())
        return {
            "success_http": self.success["http"],
            "success_smtp": self.success["smtp"],
            "failed_http": self.failed["http"],
            "failed_smtp": self.failed["smtp"],
            "successful_deliveries": self.successful_deliveries,
            "mean_latency_ms": round(self.latency_ms_total / attempts, 1) if attempts else None,
            "last_active": round(self.last_active),
        }


@dataclass
class Metrics:
    connections: Counter[str] = field(default_factory=Counter)  # open now, per service
    connections_total: Counter[str] = field(default_factory=Counter)  # since the start
    clients: dict[str, Counter[str]] = field(default_factory=dict)  # service -> ip -> open
    received: int = 0  # messages stored for local recipients (one per message)
    queued: int = 0  # messages handed to the outbound queue
    sent: int = 0  # recipients delivered to other relays
    peers: dict[str, PeerStats] = field(default_factory=dict)

    def opened(self, service: str, ip: str) -> None:
        self.connections[service] += 1
        self.connections_total[service] += 1
        self.clients.setdefault(service, Counter())[ip] += 1

    def closed(self, service: str, ip: str) -> None:
        self.connections[service] -= 1
        clients = self.clients[service]
        clients[ip] -= 1
        if clients[ip] <= 0:
            del clients[ip]

    def unique_clients(self, service: str) -> int:
        return len(self.clients.get(service, ()))

    def peer(self, domain: str) -> PeerStats:
        stats = self.peers.get(domain)
        if stats is None:
            if len(self.peers) >= MAX_PEERS:
                oldest = min(self.peers, key=lambda d: self.peers[d].last_active)
                del self.peers[oldest]
            stats = self.peers[domain] = PeerStats()
        stats.last_active = time.time()
        return stats

    def delivered_to_peer(self, domain: str, via: str, recipients: int, seconds: float) -> None:
        stats = self.peer(domain)
        stats.success[via] += 1
        stats.successful_deliveries += recipients
        stats.latency_ms_total += seconds * 1000
        self.sent += recipients

    def peer_failed(self, domain: str, via: str) -> None:
        self.peer(domain).failed[via] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "connections": dict(self.connections),
            "connections_total": dict(self.connections_total),
            "received_messages": self.received,
            "outbound_messages": self.queued,
            "sent_messages": self.sent,
            "email_servers": len(self.peers),
        }
