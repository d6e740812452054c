"""Mail the gate lets through unencrypted is walked whole by IMAP and the recipient's client,
so its MIME structure must stay within relay.mime's limits (as Postfix's mime_nesting_limit)."""

from __future__ import annotations

from relay.mime import MAX_DEPTH
from relay.policy.checks import check_incoming, check_outgoing
from tests.helpers import nested_message

TOO_COMPLEX = f"Message structure too complex: MIME nesting deeper than {MAX_DEPTH} levels"


def test_a_mailer_daemon_report_nested_beyond_the_limit_is_refused() -> None:
    sender = "mailer-daemon@[192.0.2.1]"
    decision = check_incoming(nested_message(MAX_DEPTH + 1, 8192), sender, ["bob@x.org"])
    assert (decision.kind, str(decision.reply)) == ("rejected", f"554 5.6.0 {TOO_COMPLEX}")
    decision = check_incoming(nested_message(MAX_DEPTH, 8192), sender, ["bob@x.org"])
    assert (decision.kind, decision.reply) == ("mailer-daemon", None)


def test_an_autocrypt_setup_message_nested_beyond_the_limit_is_refused() -> None:
    me = "alice0001@[127.0.0.1]"
    deep = (
        nested_message(MAX_DEPTH + 1, 8192, sender=me)
        .replace(b"Subject: deep", b"Subject: Autocrypt Setup Message")
        .replace(b"multipart/report; report-type=delivery-status", b"multipart/mixed")
    )
    decision = check_outgoing(deep, me, [me])
    assert (decision.kind, str(decision.reply)) == ("rejected", f"554 5.6.0 {TOO_COMPLEX}")
    shallow = (
        nested_message(3, 8192, sender=me)
        .replace(b"Subject: deep", b"Subject: Autocrypt Setup Message")
        .replace(b"multipart/report; report-type=delivery-status", b"multipart/mixed")
    )
    assert check_outgoing(shallow, me, [me]).kind == "autocrypt-setup"
