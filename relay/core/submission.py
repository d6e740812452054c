"""Mail a logged-in user sends (SMTP submission today, WebIMAP's send next).

`envelope_refusal()` is what may be decided from the envelope alone (the sender is the login,
the sender's rate), so SMTP can answer at RCPT; `submit()` then applies the PGP gate to the
content, cleans the headers a client must not set, and delivers. A protocol that has the whole
message at once calls both.
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
from relay.policy.checks import check_outgoing
from relay.policy.headers import clean_submitted
from relay.reply import Reply
from relay.store import StorageFull

if TYPE_CHECKING:
    from relay.app import App


@dataclass(frozen=True)
class Outcome:
    reply: Reply  # what the client is told: 250, or the refusal
    result: DeliveryResult | None = None  # None when nothing was delivered


def sender_refusal(login: str, sender: str) -> Reply | None:
    """The envelope sender must be the login. ASCII only: str.lower() folds some non-ASCII
    letters to ASCII ones (the Kelvin sign to "k"), which would let a user send as a look-alike."""
    if sender.isascii() and sender.lower() == login:
        return None
    return Reply(553, "5.7.1", f"<{sender}>: Sender address rejected: not owned by user {login}")


def rate_refusal(app: App, sender: str) -> Reply | None:
    """One message's worth of the sender's rate (chatmail: 60 a minute, bursts of 10)."""
    limiter, key = app.send_rate, sender.lower()
    if limiter.allow(key):
        return None
    wait = max(1, round(limiter.retry_after(key)))
    app.log.info("submission-rate-limited", sender=app.log.redact(sender))
    # filtermail's words, colon included: the official relay's tests look for "4.7.1: Too much"
    return Reply(450, "4.7.1", f": Too much mail from <{sender}>, rate limited for {wait} s")


def envelope_refusal(app: App, login: str, sender: str) -> Reply | None:
    return sender_refusal(login, sender) or rate_refusal(app, sender) or storage_refusal(app)


async def submit(app: App, sender: str, recipients: list[str], content: bytes) -> Outcome:
    log = app.log
    decision = await decide(app, check_outgoing, content, sender, recipients)
    if decision.reply is not None:
        log.info(
            "submission-rejected",
            sender=log.redact(sender),
            reply=str(decision.reply)[:80],
            detail=decision.detail,
        )
        return Outcome(decision.reply)
    try:
        result = await deliver(app, decision.mail_from, recipients, clean_submitted(content))
    except StorageFull:
        log.warning("submission-refused-disk-full")
        return Outcome(STORAGE_FULL)
    except Exception as e:  # a storage failure must become a temporary error, never a 250
        log.exception("submission-delivery-failed", e)
        return Outcome(STORAGE_FAILED)
    for rcpt, reply in result.failed.items():
        log.warning("submission-recipient-failed", recipient=log.redact(rcpt), reply=str(reply))
    if not result.accepted:
        return Outcome(next(iter(result.failed.values())), result)
    log.info(
        "submission-accepted",
        kind=decision.kind,
        sender=log.redact(sender),
        local=len(result.delivered),
        queued=len(result.queued),
        size=len(content),
    )
    suffix = f" as {result.queue_id}" if result.queue_id else ""
    return Outcome(Reply(250, "2.0.0", f"Ok: queued{suffix}"), result)
