"""The federation keys of the config file, with their defaults.

They live in a `[federation]` table. Until the config loader knows that table, every reader goes
through `settings(config)`, which falls back to these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Federation:
    dkim_selector: str = "opendkim"  # the official relay's selector, so existing DNS records fit
    # "ACCEPT": federate with everyone except `policy_domains` (a block list);
    # "REJECT": federate with nobody except `policy_domains` (an allow list). Both directions.
    policy: str = "ACCEPT"
    policy_domains: list[str] = field(default_factory=list)
    queue_lifetime: int = 2 * 24 * 3600  # seconds until a message is bounced (Postfix's 2d)
    retry_initial: int = 60  # seconds before the first retry; doubles up to retry_max
    retry_max: int = 1800
    resolver: str = ""  # "ip" or "ip:port" of the DNS server to ask; "" = /etc/resolv.conf
    peer_smtp_port: int = 25  # where peers listen; only tests and odd networks change these
    peer_https_port: int = 443
    ca_file: str = ""  # extra CA certificates trusted for peers (besides the system store)


def settings(config: Any) -> Federation:
    return getattr(config, "federation", None) or Federation()
