"""What the admin operations remember while the relay runs (one per relay, App.admin)."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from relay.core.admin.token import FailedAuth
from relay.events import EventHub

PENDING_ONBOARDINGS = 32  # LAN credentials handed out and not used yet, newest kept


@dataclass
class AdminState:
    hub: EventHub = field(default_factory=EventHub)  # events for admin socket subscribers
    pending: list[str] = field(default_factory=list)  # LAN onboarding addresses not used yet
    # Set by a factory reset or an identity restore: the admin socket then restarts the relay.
    restart_requested: trio.Event = field(default_factory=trio.Event)
    config_lock: trio.Lock = field(default_factory=trio.Lock)  # one settings change at a time
    failed_auth: FailedAuth = field(default_factory=FailedAuth)  # the HTTP API's bad tokens

    def remember_onboarding(self, addr: str) -> None:
        self.pending.append(addr)
        del self.pending[:-PENDING_ONBOARDINGS]
