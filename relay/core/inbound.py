"""Mail other relays hand us, over SMTP port 25 or HTTP /mxdeliv: one set of rules for both.

The address rules (`sender_refusal`, `recipient_refusal`) apply as soon as an address is known
(SMTP answers them at MAIL and RCPT, /mxdeliv before reading the message); `accept_incoming()`
then applies the PGP gate, the origin check (federation policy, DKIM) and delivers. Framing
(dot-stuffing, line rules, size) belongs to each transport and happens before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from relay.core.delivery import (
    STORAGE_FAILED,
    STORAGE_FULL,
    DeliveryResult,
    deliver,
    storage_refusal,
)
from relay.core.gate import decide
from relay.policy.checks import check_incoming
from relay.policy.origin import origin_check
from relay.reply import Reply
from relay.store import StorageFull

if TYPE_CHECKING:
    from relay.app import App

BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT = Reply(501, "5.1.3", "Bad recipient address syntax")
NO_RECIPIENTS = Reply(554, "5.5.1", "Error: no valid recipients")
ACCEPTED = Reply(250, "2.0.0", "Ok: queued")


@dataclass(frozen=True)
class Outcome:
    reply: Reply
    kind: str = ""  # what the PGP gate let in ("encrypted", "securejoin", ...)
    result: DeliveryResult | None = None


def is_mailbox(address: str) -> bool:
    """local@domain, both parts present, one @ in the local part's place, no space or brackets."""
    local, at, domain = address.rpartition("@")
    return (
        bool(at and local and domain)
        and "@" not in local
        and not any(c in address for c in " <>\r\n\t")
    )


def sender_refusal(sender: str) -> Reply | None:
    """The null sender (bounces) is fine; anything else must be a mailbox."""
    return None if not sender or is_mailbox(sender) else BAD_SENDER


def recipient_refusal(app: App, rcpt: str) -> Reply | None:
    if not is_mailbox(rcpt):
        return BAD_RECIPIENT
    if not app.config.is_local_address(rcpt):
        return Reply(554, "5.7.1", f"<{rcpt}>: Relay access denied")
    return storage_refusal(app)


async def unknown_recipient(app: App, rcpt: str) -> Reply | None:
    """For transports that can refuse a single recipient before the message (SMTP RCPT)."""
    if await app.store.account_exists(rcpt):
        return None
    return Reply(550, "5.1.1", f"<{rcpt}>: Recipient address rejected: User unknown")


async def accept_incoming(app: App, sender: str, recipients: list[str], content: bytes) -> Outcome:
    log = app.log
    decision = await decide(app, check_incoming, content, sender, recipients)
    refusal = decision.reply or await origin_check(app, content, sender)
    if refusal is not None:
        log.info(
            "incoming-rejected",
            sender=log.redact(sender),
            reply=str(refusal)[:80],
            detail=decision.detail,
        )
        return Outcome(refusal, decision.kind)
    try:
        result = await deliver(app, decision.mail_from, recipients, content)
    except StorageFull:  # the sender keeps the message and retries later
        log.warning("incoming-refused-disk-full")
        return Outcome(STORAGE_FULL, decision.kind)
    except Exception as e:  # storage trouble: the sender keeps the message and retries
        log.exception("incoming-delivery-failed", e)
        return Outcome(STORAGE_FAILED, decision.kind)
    for rcpt, reply in result.failed.items():
        log.warning("incoming-recipient-failed", recipient=log.redact(rcpt), reply=str(reply))
    if not result.accepted:
        return Outcome(next(iter(result.failed.values())), decision.kind, result)
    log.info(
        "incoming-accepted",
        kind=decision.kind,
        sender=log.redact(sender),
        local=len(result.delivered),
        size=len(content),
    )
    return Outcome(ACCEPTED, decision.kind, result)
