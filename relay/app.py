"""What every service shares: the live configuration, the store, TLS and the logger."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relay.config import Config
from relay.log import Logger
from relay.tls import TLSManager

if TYPE_CHECKING:
    from relay.store import Store


@dataclass
class App:
    config: Config  # replaced as a whole on reload: read it per decision, do not cache sections
    store: Store
    tls: TLSManager
    log: Logger
    started_at: float = field(default_factory=time.time)
