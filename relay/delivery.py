"""The one way a message gets in: local recipients to their INBOX, others to the outbound queue.

SMTP (submission and MX) and, later, /mxdeliv call `deliver()` after their policy checks. It
returns only when every copy it reports as delivered or queued is durable, so the caller may
then acknowledge. The store wakes IMAP IDLE sessions itself. `data` is the message itself
(not dot-stuffed); local copies lose transit headers (DKIM-Signature, Authentication-Results,
Received) before they are stored, remote ones are queued exactly as given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from relay import federation
from relay.federation.bounce import send_bounce
from relay.policy.headers import clean_for_storage
from relay.store import NoSuchAccount, QuotaExceeded

if TYPE_CHECKING:
    from relay.app import App


@dataclass
class DeliveryResult:
    delivered: list[str] = field(default_factory=list)  # local recipients, stored
    queued: list[str] = field(default_factory=list)  # remote recipients, in the outbound queue
    queue_id: str | None = None
    failed: dict[str, str] = field(default_factory=dict)  # recipient -> SMTP reply line

    @property
    def accepted(self) -> bool:
        return bool(self.delivered or self.queued)


async def deliver(app: App, sender: str, recipients: list[str], data: bytes) -> DeliveryResult:
    result = DeliveryResult()
    local: list[str] = []
    remote: list[str] = []
    for rcpt in dict.fromkeys(r.lower() for r in recipients):
        (local if app.config.is_local_address(rcpt) else remote).append(rcpt)
    if local:
        await _deliver_local(app, sender, local, clean_for_storage(data), result)
    if remote:
        result.queue_id = await app.store.enqueue(sender, remote, data)
        result.queued = remote
        federation.kick(app)
    if result.failed and result.accepted:
        # The sender gets its 250 for the others, so the failures must reach it as a report.
        arrived = datetime.now(UTC)
        if await send_bounce(app, sender, result.failed, data, arrived):
            federation.kick(app)
    return result


async def _deliver_local(
    app: App, sender: str, recipients: list[str], data: bytes, result: DeliveryResult
) -> None:
    # The store refuses the whole batch if one recipient cannot take the message; take that
    # recipient out and try again, so one full mailbox does not hold up everybody else.
    pending = list(recipients)
    while pending:
        try:
            await app.store.deliver(pending, data, sender=sender)
        except (QuotaExceeded, NoSuchAccount) as e:
            addr = e.addr.lower()
            if addr not in pending:
                raise
            pending.remove(addr)
            if isinstance(e, QuotaExceeded):
                result.failed[addr] = (
                    f"552 5.2.2 <{addr}>: Quota exceeded (mailbox for user is full)"
                )
            else:
                result.failed[addr] = (
                    f"550 5.1.1 <{addr}>: Recipient address rejected: User unknown"
                )
        else:
            result.delivered = pending
            return
