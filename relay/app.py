"""What every service shares for the life of one relay: the live configuration, the store, TLS,
the logger, and the limits that must count across services (connections per IP, bodies in
memory, login failures, send rates).

A process may run several relays (the tests do), so none of this is module-global.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from relay.config import Config
from relay.core.accounts import Accounts
from relay.core.admin.state import AdminState
from relay.core.update.updater import Updater
from relay.events import EventHub
from relay.iroh.relay import Hub as IrohHub
from relay.log import Logger
from relay.metrics import Metrics
from relay.net import Admission
from relay.onboarding import IssuedAddresses
from relay.ratelimit import GCRA, AuthThrottle, ByteBudget, ReloadableGCRA
from relay.shadowsocks.service import Shadowsocks
from relay.tls import TLSManager

if TYPE_CHECKING:
    from relay.core.push import Notifier
    from relay.services import ServiceRegistry
    from relay.store import MailStore


def _send_rate(config: Config) -> tuple[float, int]:
    return config.limits.max_user_send_per_minute, config.limits.max_user_send_burst_size


def _new_account_rate(config: Config) -> tuple[float, int]:
    return config.limits.new_account_per_minute, config.limits.new_account_burst


async def _no_reload() -> dict[str, Any]:
    return {"applied": False, "restart_required": [], "error": "the relay is not running"}


@dataclass
class App:
    config: Config  # replaced as a whole on reload: read it per decision, do not cache sections
    store: MailStore
    tls: TLSManager
    log: Logger
    started_at: float = field(default_factory=time.monotonic)  # for the uptime: no clock jumps
    admission: Admission = field(default_factory=Admission)  # over every service
    auth_throttle: AuthThrottle = field(default_factory=AuthThrottle)  # IMAP and SMTP together
    accounts: Accounts = field(default_factory=Accounts)  # login cache, first logins in flight
    events: EventHub = field(default_factory=EventHub)  # {"type": "account_created", "addr"}
    issued: IssuedAddresses = field(default_factory=IssuedAddresses)  # by /new, never twice
    # CPU-bound work on what clients send (MIME structure, SEARCH text) runs in worker threads,
    # so the event loop keeps answering everyone else; at most this many at once.
    cpu_work: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(2))
    services: ServiceRegistry | None = None  # set by relay.server once the registry runs
    # Called after something was queued for other relays; the queue worker installs itself.
    on_queued: Callable[[], None] = field(default=lambda: None)
    push: Notifier | None = None  # the push notifier while it runs (relay.core.push)
    iroh: IrohHub = field(default_factory=IrohHub)  # the built-in iroh relay's clients
    metrics: Metrics = field(default_factory=Metrics)  # counters for the admin API
    admin: AdminState = field(default_factory=AdminState)  # the admin operations' memory
    # Re-read the config file and apply it (services started and stopped); relay.server installs
    # it. Answers {"applied", "restart_required", "error"}.
    reload: Callable[[], Awaitable[dict[str, Any]]] = field(default=lambda: _no_reload())
    shadowsocks: Shadowsocks = field(default_factory=Shadowsocks)  # salts seen, counters
    update: Updater = field(default_factory=Updater)  # the one update worker and its state
    _body_budget: ByteBudget = field(default_factory=lambda: ByteBudget(0))
    _send_rate: ReloadableGCRA = field(default_factory=lambda: ReloadableGCRA(_send_rate))
    _new_accounts: ReloadableGCRA = field(default_factory=lambda: ReloadableGCRA(_new_account_rate))

    @property
    def body_budget(self) -> ByteBudget:
        """Message bodies buffered in memory right now, shared by SMTP, IMAP and HTTP."""
        self._body_budget.total = self.config.limits.max_message_bytes_in_flight  # follows reload
        return self._body_budget

    @property
    def send_rate(self) -> GCRA:
        """Mail per sender and minute (submission); rebuilt if a reload changed the limits."""
        return self._send_rate.get(self.config)

    @property
    def new_account_rate(self) -> GCRA:
        """/new requests per client IP."""
        return self._new_accounts.get(self.config)
