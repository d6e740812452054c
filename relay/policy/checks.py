"""Content checks after DATA, in the anchor's order and with its reply texts.

`check_outgoing` is for mail a logged-in client submits; `check_incoming` for mail another relay
hands us (SMTP port 25 and /mxdeliv, through relay.core.inbound). Both return a `Decision`;
`reply` is None when the message is accepted. Envelope checks (sender = login, rate limit) are
relay.core.submission's and happen earlier, at RCPT. filtermail sends these refusals without an
enhanced status code; ours carry one before the same text (see relay.reply).
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.mime import limit_exceeded
from relay.policy import structure as mime
from relay.policy.pgp import (
    from_address,
    is_autocrypt_setup_to_self,
    is_mailer_daemon_report,
    is_securejoin_request,
    why_not_encrypted,
)
from relay.reply import Reply

# 5.7.1 as madmail sends it: a policy refusal (5.7.10 "Encryption Needed" is TLS before AUTH)
UNENCRYPTED = Reply(523, "5.7.1", "Encryption Needed: Invalid Unencrypted Mail")


@dataclass(frozen=True)
class Decision:
    kind: str  # "encrypted", "securejoin", "autocrypt-setup", "mailer-daemon" or "rejected"
    reply: Reply | None  # the refusal, None to accept
    mail_from: str  # the envelope sender to deliver with (incoming may reset it to "")
    detail: str = ""  # why, for logs only

    @property
    def accepted(self) -> bool:
        return self.reply is None


def _unencrypted(kind: str, content: bytes, mail_from: str) -> Decision:
    """Accept mail that an exception lets through in the clear, if its whole MIME structure
    stays within the limits (as Postfix's mime_nesting_limit): IMAP and the recipient's client
    walk all of it, while the gate itself only looked at the top."""
    exceeded = limit_exceeded(content)
    if exceeded is not None:
        refusal = Reply(554, "5.6.0", f"Message structure too complex: {exceeded}")
        return Decision("rejected", refusal, mail_from, exceeded)
    return Decision(kind, None, mail_from)


def _parse(content: bytes) -> mime.Part | Reply:
    try:
        return mime.parse(content)
    except mime.MimeError as e:
        return Reply(500, "5.6.0", f"Failed to parse message: {e}")


def _message_and_from(content: bytes, mail_from: str) -> tuple[mime.Part, str] | Decision:
    """The parsed message and its single From address, or the refusal when either fails."""
    message = _parse(content)
    if isinstance(message, Reply):
        return Decision("rejected", message, mail_from)
    address = from_address(message)
    if address is None:
        value = " ".join(str(v) for v in message.headers.get_all("From") or [])
        return Decision("rejected", Reply(500, "5.6.0", f"Invalid FROM header: {value[:200]}"), "")
    return message, address


def check_outgoing(content: bytes, mail_from: str, recipients: list[str]) -> Decision:
    parsed = _message_and_from(content, mail_from)
    if isinstance(parsed, Decision):
        return parsed
    message, header_from = parsed
    if header_from.lower() != mail_from.lower():
        refusal = Reply(500, "5.7.1", f"Invalid FROM <{header_from}> for <{mail_from}>")
        return Decision("rejected", refusal, mail_from)
    reason = why_not_encrypted(message, outgoing=True)
    if reason is None:
        return Decision("encrypted", None, mail_from)
    if is_securejoin_request(message):
        return _unencrypted("securejoin", content, mail_from)
    if is_autocrypt_setup_to_self(message, header_from, recipients):
        return _unencrypted("autocrypt-setup", content, mail_from)
    return Decision("rejected", UNENCRYPTED, mail_from, reason)


def check_incoming(content: bytes, mail_from: str, recipients: list[str]) -> Decision:
    parsed = _message_and_from(content, mail_from)
    if isinstance(parsed, Decision):
        return parsed
    message, header_from = parsed
    # A forwarded or forged envelope sender is not refused, but bounces must not go to it.
    if header_from.lower() != mail_from.lower():
        mail_from = ""
    reason = why_not_encrypted(message, outgoing=False)
    if reason is None:
        return Decision("encrypted", None, mail_from)
    if is_securejoin_request(message):
        return _unencrypted("securejoin", content, mail_from)
    if is_mailer_daemon_report(message, header_from):
        return _unencrypted("mailer-daemon", content, mail_from)
    return Decision("rejected", UNENCRYPTED, mail_from, reason)
