"""The DNS zone and the DKIM key as the admin should publish them (/admin/dns, /admin/dkim)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from relay.core.zone import dns_records
from relay.outbound import dkim

if TYPE_CHECKING:
    from relay.app import App


async def dns(app: App, body: dict[str, Any]) -> dict[str, Any]:
    zone = await trio.to_thread.run_sync(dns_records, app.config)  # may make the DKIM key
    records = [line for line in zone.splitlines() if line and not line.startswith(";")]
    return {"domain": app.config.mail_domain, "zone": zone, "records": records}


async def dkim_key(app: App, body: dict[str, Any]) -> dict[str, Any]:
    """The signing key's DNS record; LAN mode signs nothing (no DNS to publish a key in)."""
    config = app.config
    selector = config.federation.dkim_selector
    answer = {
        "selector": selector,
        "domain": config.mail_domain,
        "name": f"{selector}._domainkey.{config.mail_domain}",
        "signing": not config.is_lan,
        "txt": None,
        "record": None,
    }
    if config.is_lan:
        return answer
    record = await trio.to_thread.run_sync(dkim.dkim_dns_record, config)  # may make the key
    return answer | {"txt": dkim.record_value(config), "record": record}
