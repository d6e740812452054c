"""What every service shares: the live configuration, the store, TLS and the logger."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from relay.config import Config
from relay.log import Logger
from relay.ratelimit import AuthThrottle, ByteBudget
from relay.tls import TLSManager

if TYPE_CHECKING:
    from relay.store import Store

T = TypeVar("T")


@dataclass
class App:
    config: Config  # replaced as a whole on reload: read it per decision, do not cache sections
    store: Store
    tls: TLSManager
    log: Logger
    started_at: float = field(default_factory=time.time)
    auth_throttle: AuthThrottle = field(
        default_factory=AuthThrottle
    )  # IMAP and SMTP count together
    _service_state: dict[str, Any] = field(default_factory=dict)

    @property
    def body_budget(self) -> ByteBudget:
        """Message bodies buffered in memory right now, shared by SMTP and HTTP."""
        total = self.config.limits.max_message_bytes_in_flight
        budget = self.service_state("body_budget", lambda: ByteBudget(total))
        budget.total = total  # follows a reload
        return budget

    def service_state(self, name: str, factory: Callable[[], T]) -> T:
        """State a service keeps for the life of this relay (rate limiters, connection counts)."""
        if name not in self._service_state:
            self._service_state[name] = factory()
        return self._service_state[name]
