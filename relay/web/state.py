"""Memory the web side keeps per running relay: the /new rate limiter and recent addresses.

`App` belongs to the whole relay, so this state is looked up by the App's identity and
forgotten when the App is garbage collected (tests run many relays in one process).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relay.config import Config
from relay.ratelimit import GCRA

if TYPE_CHECKING:
    from relay.app import App

# The anchor lets each IP ask for 2 accounts per second with a burst of 5.
NEW_ACCOUNT_PER_MINUTE = 120
NEW_ACCOUNT_BURST = 5
RECENT_ADDRESSES = 100_000  # issued but maybe never used: never hand them out twice


def new_account_rate(config: Config) -> tuple[float, int]:
    limits = config.limits
    return (
        getattr(limits, "new_account_per_minute", NEW_ACCOUNT_PER_MINUTE),
        getattr(limits, "new_account_burst", NEW_ACCOUNT_BURST),
    )


@dataclass
class WebState:
    new_account_limit: GCRA
    recent: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def remember(self, addr: str) -> bool:
        """Record an issued address; False if it was issued before."""
        if addr in self.recent:
            return False
        self.recent[addr] = None
        while len(self.recent) > RECENT_ADDRESSES:
            self.recent.popitem(last=False)
        return True


_states: dict[int, WebState] = {}


def web_state(app: App) -> WebState:
    state = _states.get(id(app))
    if state is None:
        state = WebState(new_account_limit=GCRA(*new_account_rate(app.config)))
        _states[id(app)] = state
        weakref.finalize(app, _states.pop, id(app), None)
    return state
