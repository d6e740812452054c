"""Memory the web side keeps per running relay: the /new rate limiter and recent addresses.

It lives in the App's service state, so every relay in a process (tests run many) has its own.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relay.config import Config
from relay.ratelimit import GCRA, ConnectionCounter

if TYPE_CHECKING:
    from relay.app import App

RECENT_ADDRESSES = 100_000  # issued but maybe never used: never hand them out twice


def new_account_rate(config: Config) -> tuple[float, int]:
    return config.limits.new_account_per_minute, config.limits.new_account_burst


@dataclass
class WebState:
    new_account_limit: GCRA
    recent: OrderedDict[str, None] = field(default_factory=OrderedDict)
    connections: ConnectionCounter = field(default_factory=ConnectionCounter)  # per client IP

    def remember(self, addr: str) -> bool:
        """Record an issued address; False if it was issued before."""
        if addr in self.recent:
            return False
        self.recent[addr] = None
        while len(self.recent) > RECENT_ADDRESSES:
            self.recent.popitem(last=False)
        return True


def web_state(app: App) -> WebState:
    return app.service_state(
        "web", lambda: WebState(new_account_limit=GCRA(*new_account_rate(app.config)))
    )
