"""Delivery status notifications (RFC 3464) for mail we could not deliver.

The report carries the original headers only: the body is end-to-end encrypted and useless to
the sender's client, which matches the report to its message by the Message-ID.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from email.utils import format_datetime, formatdate
from typing import Any

from relay.store import Delivery

MAX_ORIGINAL_HEADERS = 64 * 1024


def original_headers(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    head = message[: end + 2] if end >= 0 else message
    return head[:MAX_ORIGINAL_HEADERS]


def _status(reply: str) -> str:
    """An enhanced status code from the reply ("5.1.1"), or a generic one for its class."""
    words = reply.split()
    if len(words) > 1 and words[1][:1] in "45" and words[1].count(".") == 2:
        return words[1]
    return "5.0.0" if reply.startswith("5") else "4.0.0"


def make_bounce(
    config: Any, sender: str, failures: dict[str, str], message: bytes, arrived: datetime
) -> bytes:
    """A multipart/report for `sender` listing each failed recipient with its last reply."""
    domain = config.address_domain
    boundary = secrets.token_hex(12)
    human = [
        f"This is the mail system at {config.mail_domain}.",
        "",
        "Your message could not be delivered to these recipients:",
        "",
        *(f"  <{rcpt}>: {reply}" for rcpt, reply in failures.items()),
        "",
    ]
    per_recipient = []
    for rcpt, reply in failures.items():
        per_recipient += [
            f"Final-Recipient: rfc822; {rcpt}",
            "Action: failed",
            f"Status: {_status(reply)}",
            f"Diagnostic-Code: smtp; {reply}",
            "",
        ]
    status = [
        f"Reporting-MTA: dns; {config.mail_domain}",
        f"Arrival-Date: {format_datetime(arrived)}",
        "",
        *per_recipient,
    ]
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{domain}>",
        f"To: <{sender}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {formatdate(localtime=False)}",
        f"Message-ID: <{secrets.token_hex(16)}@{domain}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Description: Notification",
        "",
        *human,
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        *status,
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "Content-Description: Undelivered message headers",
        "",
    ]
    head = "\r\n".join(lines).encode() + b"\r\n" + original_headers(message)
    if not head.endswith(b"\r\n"):
        head += b"\r\n"
    return head + f"\r\n--{boundary}--\r\n".encode()


async def send_bounce(
    app: Any, sender: str, failures: dict[str, str], message: bytes, arrived: datetime
) -> bool:
    """Report recipients that failed for good to the sender, locally or through the queue.

    Never for a null sender (a bounce itself), so bounces cannot loop. Returns True when the
    report went into the outbound queue, so the caller can wake the queue worker.
    """
    if not sender:
        return False
    report = make_bounce(app.config, sender, failures, message, arrived)
    app.log.info("bounced", sender=app.log.redact(sender), recipients=len(failures))
    local = app.config.is_local_address(sender)
    outcome = await app.store.commit_delivery(
        Delivery(
            sender="",
            local=(sender,) if local else (),
            local_data=report if local else b"",
            remote=() if local else (sender,),
            remote_data=b"" if local else report,
        )
    )
    if outcome.failed:
        error = next(iter(outcome.failed.values()))
        app.log.info("bounce-dropped", reason=type(error).__name__)
    return bool(outcome.queued)
