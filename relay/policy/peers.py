"""Federation policy: which peer domains we exchange mail with, applied in both directions.

"ACCEPT" mode treats the domain list as a block list, "REJECT" mode as an allow list (the same
two modes madmail offers). Our own domain always passes.
"""

from __future__ import annotations

from typing import Any

from relay.reply import Reply

REJECT_REPLY = Reply(550, "5.7.1", "Federation policy rejection")


def normalize(domain: str) -> str:
    """Lower case, without the brackets of a domain literal and without a trailing dot."""
    return domain.strip().lower().strip("[]").rstrip(".")


def peer_allowed(config: Any, domain: str) -> bool:
    peer = normalize(domain)
    if peer == normalize(config.mail_domain):
        return True
    fed = config.federation
    if not fed.enabled:
        return False
    listed = peer in {normalize(d) for d in fed.policy_domains}
    if fed.policy.upper() == "REJECT":
        return listed
    return not listed


def address_domain(addr: str) -> str:
    return addr.rpartition("@")[2]
