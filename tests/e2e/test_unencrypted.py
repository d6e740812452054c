"""The relay refuses plain unencrypted mail from a logged-in user, as the client never sends it."""

from __future__ import annotations

import imaplib
import smtplib
from email.mime.text import MIMEText

import pytest

from tests.e2e.dclient import LiveRelay

ENCRYPTION_NEEDED = 523


def _submit_plain(relay: LiveRelay, service: str, sender: dict, rcpt: str) -> int:
    """Send one plain-text mail over real TLS; the reply code that refused it (0: accepted)."""
    message = MIMEText("this is not encrypted")
    message["From"], message["To"], message["Subject"] = sender["email"], rcpt, "plain"
    context = relay.ssl_client_context()
    if service == "submissions":
        smtp = smtplib.SMTP_SSL(relay.host, relay.port(service), context=context, timeout=10)
    else:
        smtp = smtplib.SMTP(relay.host, relay.port(service), timeout=10)
        smtp.starttls(context=context)
    with smtp:
        smtp.login(sender["email"], sender["password"])
        try:
            smtp.sendmail(sender["email"], [rcpt], message.as_string())
        except smtplib.SMTPDataError as e:
            return e.smtp_code
        except smtplib.SMTPRecipientsRefused as e:
            [(code, _text)] = e.recipients.values()
            return code
    return 0


@pytest.mark.parametrize("service", ["submissions", "submission"])
def test_plain_message_over_raw_smtp_is_refused_with_523(relay: LiveRelay, service: str) -> None:
    sender, receiver = relay.new_account(), relay.new_account()
    with imaplib.IMAP4_SSL(
        relay.host, relay.port("imaps"), ssl_context=relay.ssl_client_context()
    ) as imap:
        imap.login(receiver["email"], receiver["password"])  # the account exists from now on

        assert _submit_plain(relay, service, sender, receiver["email"]) == ENCRYPTION_NEEDED

        typ, data = imap.select("INBOX")
        assert typ == "OK" and data == [b"0"], "the refused message must not be delivered"
