"""`deliver()`: the one way a message gets in, for every protocol that accepts mail.

Local recipients get the message in their INBOX, remote ones one entry in the outbound queue,
and local recipients that cannot take it (unknown, over quota) a delivery report to the sender,
all in ONE store operation: one fdatasync, and either all of it is durable or none of it, so a
client that is told to retry never makes a second copy for anybody. It returns only when what it
reports is durable, so the caller may then acknowledge. The store wakes IMAP IDLE sessions;
the queue worker is woken here.

`data` is the message itself (not dot-stuffed). Local copies lose transit headers
(DKIM-Signature, Authentication-Results, Received); remote ones are queued exactly as given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from relay.config import Config
from relay.core.push import push_tokens
from relay.outbound.bounce import make_bounce
from relay.policy.headers import clean_for_storage
from relay.reply import Reply
from relay.store import Delivery, DeliveryReport, QuotaExceeded, StoreError

if TYPE_CHECKING:
    from relay.app import App


STORAGE_FAILED = Reply(451, "4.3.0", "Error: queue file write error")  # the client retries
STORAGE_FULL = Reply(452, "4.3.1", "Insufficient system storage")  # retried once space is back


def storage_refusal(app: App) -> Reply | None:
    """Refuse new mail early (at RCPT, before a body is read) while the data disk is full."""
    return STORAGE_FULL if app.store.storage_full() else None


@dataclass
class DeliveryResult:
    delivered: list[str] = field(default_factory=list)  # local recipients, stored
    queued: list[str] = field(default_factory=list)  # remote recipients, in the outbound queue
    queue_id: str | None = None
    failed: dict[str, Reply] = field(default_factory=dict)  # recipient -> why not

    @property
    def accepted(self) -> bool:
        return bool(self.delivered or self.queued)


def refusal_for(addr: str, error: StoreError) -> Reply:
    if isinstance(error, QuotaExceeded):
        return Reply(552, "5.2.2", f"<{addr}>: Quota exceeded (mailbox for user is full)")
    return Reply(550, "5.1.1", f"<{addr}>: Recipient address rejected: User unknown")


def _report(
    config: Config, sender: str, message: bytes, arrived: datetime, failed: dict[str, StoreError]
) -> DeliveryReport:
    lines = {addr: str(refusal_for(addr, error)) for addr, error in failed.items()}
    return DeliveryReport(make_bounce(config, sender, lines, message, arrived))


async def deliver(app: App, sender: str, recipients: list[str], data: bytes) -> DeliveryResult:
    config = app.config
    local: list[str] = []
    remote: list[str] = []
    for rcpt in dict.fromkeys(r.lower() for r in recipients):
        (local if config.is_local_address(rcpt) else remote).append(rcpt)
    # Never a report for a null sender (a report itself), so reports cannot loop.
    report = partial(_report, config, sender, data, datetime.now(UTC)) if sender else None
    outcome = await app.store.commit_delivery(
        Delivery(
            sender=sender,
            local=tuple(local),
            local_data=clean_for_storage(data) if local else b"",
            remote=tuple(remote),
            remote_data=data if remote else b"",
            sender_is_local=bool(sender) and config.is_local_address(sender),
            report=report,
            push_tokens=push_tokens(app),
        )
    )
    app.metrics.received += bool(outcome.delivered)
    app.metrics.queued += bool(outcome.queued)
    if outcome.push and app.push is not None:
        app.push.add(outcome.push)  # durable with the delivery: the POSTs start right away
    if outcome.queued or outcome.report == "queued":
        app.on_queued()
    if outcome.report:
        app.log.info("bounced", sender=app.log.redact(sender), recipients=len(outcome.failed))
    return DeliveryResult(
        delivered=outcome.delivered,
        queued=outcome.queued,
        queue_id=outcome.queue_id,
        failed={addr: refusal_for(addr, error) for addr, error in outcome.failed.items()},
    )
