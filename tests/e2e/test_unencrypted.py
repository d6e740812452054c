"""The relay refuses plain unencrypted mail from a logged-in user, and the real client knows why."""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Callable
from email.mime.text import MIMEText

import pytest
from deltachat_rpc_client.const import MessageState

from tests.e2e.dclient import LiveRelay, Profile

ENCRYPTION_NEEDED = (523, b"5.7.1 Encryption Needed: Invalid Unencrypted Mail")


def _submit_plain(relay: LiveRelay, service: str, sender: dict, rcpt: str) -> tuple[int, bytes]:
    """Send one plain-text mail over real TLS; the reply that refused it ((0, b""): accepted)."""
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
            return e.smtp_code, e.smtp_error
        except smtplib.SMTPRecipientsRefused as e:
            [(code, text)] = e.recipients.values()
            return code, text
    return 0, b""


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


def test_the_client_recognises_the_refusal_of_unencrypted_mail(
    make_profile: Callable[[str], Profile],
) -> None:
    """The real client, allowed to send in the clear, meets the 523 and acts on it as it does on
    the official relay: the message fails at once (a 5xx is permanent), with the relay's line as
    its error, and the chat gets the client's own notice that the provider requires end-to-end
    encryption (SystemMessage InvalidUnencryptedMail). Core adds that notice only when the
    refusal contains "Invalid Unencrypted Mail", so the enhanced code must leave that text as is."""
    alice, bob = make_profile("alice"), make_profile("bob")
    alice.call(alice.account.set_config, "force_encryption", "0")  # else core refuses by itself
    contact = alice.call(alice.account.create_contact, bob.addr)  # by address, no key: plain
    chat = alice.call(contact.create_chat)
    sent = alice.call(chat.send_text, "this is not encrypted")

    failed = alice.wait_message(sent.id, lambda m: m.state == MessageState.OUT_FAILED)
    # core words it "Permanent SMTP error: permanent: <the line after the reply code>"
    assert "permanent: 5.7.1 Encryption Needed: Invalid Unencrypted Mail" in failed.error
    info = [
        snapshot
        for message in alice.call(chat.get_messages)
        if (snapshot := alice.call(message.get_snapshot)).is_info
    ]
    notices = [m for m in info if m.system_message_type == "InvalidUnencryptedMail"]
    assert notices, [(m.system_message_type, m.text) for m in info]
    assert "end-to-end encryption" in notices[0].text
