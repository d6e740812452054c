"""Byte-script tests of the sans-IO SMTP engine."""

from __future__ import annotations

import base64

import pytest

from relay.smtp.engine import MAX_COMMAND_LINE, MAX_ERRORS, MAX_JUNK, SMTPEngine
from relay.smtp.events import (
    NEED_DATA,
    AuthAttempt,
    Closed,
    MailFrom,
    MessageData,
    RcptTo,
    StartTLS,
    stuff,
    unstuff,
)
from tests.smtp.engine_helpers import authed_engine, codes, make_engine, plain, pump, transaction


def test_greeting_and_ehlo_capabilities() -> None:
    engine = SMTPEngine("relay.test", max_message_size=1234, tls_active=False)
    assert engine.data_to_send() == b"220 relay.test ESMTP\r\n"
    pump(engine, b"EHLO client.example\r\n")
    out = engine.data_to_send().decode()
    lines = out.split("\r\n")[:-1]
    assert lines[0] == "250-relay.test"
    assert lines[-1].startswith("250 ")
    caps = {line[4:] for line in lines[1:]}
    assert {"PIPELINING", "SIZE 1234", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME"} <= caps
    assert "SMTPUTF8" in caps
    assert not any(c.startswith("AUTH") for c in caps), "no AUTH before TLS on 587"


def test_auth_offered_under_tls_and_not_after_login() -> None:
    engine = make_engine()
    pump(engine, b"EHLO c\r\n")
    out = engine.data_to_send()
    assert b"250-AUTH PLAIN LOGIN\r\n" in out
    assert b"STARTTLS" not in out
    pump(engine, f"AUTH PLAIN {plain('u@relay.test', 'secret')}\r\nEHLO c\r\n".encode())
    out = engine.data_to_send()
    assert out.startswith(b"235 2.7.0 Authentication successful\r\n")
    assert b"AUTH" not in out.split(b"\r\n", 1)[1]


def test_mx_profile_has_no_auth() -> None:
    engine = make_engine(offer_auth=False, require_auth=False, tls_active=False)
    pump(engine, b"EHLO c\r\nAUTH PLAIN AGEAYg==\r\n")
    out = engine.data_to_send()
    assert b"AUTH" not in out.split(b"\r\n503")[0]
    assert b"503 5.5.1 Error: authentication not enabled\r\n" in out


def test_auth_before_tls_is_refused_when_tls_required() -> None:
    engine = make_engine(tls_active=False)
    events = pump(engine, f"EHLO c\r\nAUTH PLAIN {plain('u@x', 'p')}\r\n".encode())
    assert events == []
    assert engine.data_to_send().endswith(b"530 5.7.0 Must issue a STARTTLS command first\r\n")


def test_auth_plain_events_and_failure() -> None:
    engine = make_engine()
    seen = []

    def refuse(engine: SMTPEngine, event: object) -> None:
        seen.append(event)
        engine.reject(535, "5.7.8 Authentication credentials invalid")

    pump(engine, f"EHLO c\r\nAUTH PLAIN {plain('u@relay.test', 'pw1')}\r\n".encode(), refuse)
    assert seen == [AuthAttempt("PLAIN", "u@relay.test", "pw1")]
    assert seen[0].password == "pw1"
    assert engine.data_to_send().endswith(b"535 5.7.8 Authentication credentials invalid\r\n")
    assert engine.authenticated is None


def test_auth_plain_with_continuation_and_login() -> None:
    engine = make_engine()
    events = pump(engine, b"EHLO c\r\nAUTH PLAIN\r\n")
    assert events == [] and engine.data_to_send().endswith(b"334 \r\n")
    events = pump(engine, plain("u@relay.test", "pw").encode() + b"\r\n")
    assert events == [AuthAttempt("PLAIN", "u@relay.test", "pw")]

    engine = make_engine()
    pump(engine, b"EHLO c\r\nAUTH LOGIN\r\n")
    assert engine.data_to_send().endswith(b"334 VXNlcm5hbWU6\r\n")
    pump(engine, base64.b64encode(b"u@relay.test") + b"\r\n")
    assert engine.data_to_send() == b"334 UGFzc3dvcmQ6\r\n"
    events = pump(engine, base64.b64encode(b"pw") + b"\r\n")
    assert events == [AuthAttempt("LOGIN", "u@relay.test", "pw")]
    assert engine.authenticated == "u@relay.test"


def test_auth_abort_bad_base64_and_unknown_mechanism() -> None:
    engine = make_engine()
    pump(engine, b"EHLO c\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN !!!\r\nAUTH CRAM-MD5\r\n")
    out = engine.data_to_send()
    assert codes(out)[-3:] == [501, 501, 504]
    assert b"501 5.7.0 Authentication aborted" in out


def test_auth_plain_authzid_must_match() -> None:
    engine = make_engine()
    response = base64.b64encode(b"admin@relay.test\0u@relay.test\0pw").decode()
    assert pump(engine, f"EHLO c\r\nAUTH PLAIN {response}\r\n".encode()) == []
    assert engine.data_to_send().endswith(b"535 5.7.8 Authentication credentials invalid\r\n")


def test_mail_requires_hello_and_auth() -> None:
    engine = make_engine()
    pump(engine, b"MAIL FROM:<a@relay.test>\r\nEHLO c\r\nMAIL FROM:<a@relay.test>\r\n")
    out = engine.data_to_send()
    assert b"503 5.5.1 Error: send HELO/EHLO first" in out
    assert out.endswith(b"530 5.7.0 Authentication required\r\n")


def test_full_pipelined_transaction() -> None:
    engine = authed_engine()
    events = pump(engine, transaction(b"Subject: x\r\n\r\n..dot\r\nend\r\n") + b"QUIT\r\n")
    kinds = [type(e) for e in events]
    assert kinds == [MailFrom, RcptTo, MessageData, Closed]
    message = events[2]
    assert message.sender == "a@relay.test" and message.recipients == ("b@relay.test",)
    assert message.transmission == b"Subject: x\r\n\r\n..dot\r\nend\r\n"
    assert message.content == b"Subject: x\r\n\r\n.dot\r\nend\r\n"
    assert codes(engine.data_to_send()) == [250, 250, 354, 250, 221]


def test_mail_params() -> None:
    engine = authed_engine()
    events = pump(engine, b"MAIL FROM:<a@relay.test> BODY=8BITMIME SMTPUTF8 SIZE=100\r\n")
    assert events == [
        MailFrom("a@relay.test", {"BODY": "8BITMIME", "SMTPUTF8": None, "SIZE": "100"})
    ]
    pump(engine, b"RSET\r\nMAIL FROM:<a@relay.test> SIZE=10001\r\n")
    assert engine.data_to_send().endswith(b"552 5.3.4 Message size exceeds fixed limit\r\n")
    pump(engine, b"MAIL FROM:<a@relay.test> FOO=1\r\nMAIL FROM:<a@relay.test> BODY=BINARYMIME\r\n")
    assert codes(engine.data_to_send()) == [555, 501]


def test_command_order_errors() -> None:
    engine = authed_engine()
    pump(
        engine, b"RCPT TO:<b@x>\r\nDATA\r\nMAIL FROM:<a@relay.test>\r\nMAIL FROM:<a@x>\r\nDATA\r\n"
    )
    out = engine.data_to_send()
    assert codes(out) == [503, 503, 250, 503, 554]
    assert b"554 5.5.1 Error: no valid recipients" in out


def test_rejected_recipient_is_not_in_transaction() -> None:
    engine = authed_engine()

    def decide(engine: SMTPEngine, event: object) -> None:
        if isinstance(event, RcptTo) and event.address.startswith("bad"):
            engine.reject(550, "5.1.1 nope")
        else:
            engine.accept()

    script = (
        b"MAIL FROM:<a@relay.test>\r\nRCPT TO:<bad@x>\r\nRCPT TO:<good@x>\r\nDATA\r\nx\r\n.\r\n"
    )
    events = pump(engine, script, decide)
    assert events[-1].recipients == ("good@x",)


def test_too_many_recipients() -> None:
    engine = authed_engine(max_recipients=2)
    pump(engine, b"MAIL FROM:<a@relay.test>\r\n" + b"RCPT TO:<b@x>\r\n" * 3)
    assert codes(engine.data_to_send()) == [250, 250, 250, 452]


def test_vrfy_never_enumerates() -> None:
    engine = make_engine(offer_auth=False, require_auth=False)
    pump(engine, b"VRFY someone@relay.test\r\nVRFY wrongaddress\r\n")
    assert engine.data_to_send() == b"252 2.0.0 someone@relay.test\r\n252 2.0.0 wrongaddress\r\n"


def test_unknown_command_and_error_limit() -> None:
    engine = make_engine()
    events = pump(engine, b"FOO\r\n" * (MAX_ERRORS + 5))
    out = engine.data_to_send()
    assert out.startswith(b"500 5.5.2 Error: command not recognized\r\n")
    assert codes(out) == [500] * MAX_ERRORS + [421]
    assert events == [Closed("errors")]


def test_long_command_line_is_refused_in_bounded_memory() -> None:
    engine = make_engine()
    for _ in range(50):
        pump(engine, b"A" * 10_000)
        assert len(engine._in) <= MAX_COMMAND_LINE + 10_000
    pump(engine, b"\r\nNOOP\r\n")
    assert codes(engine.data_to_send()) == [500, 250]


def test_starttls_discards_pipelined_cleartext() -> None:
    engine = make_engine(tls_active=False)
    events = pump(engine, b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\n")
    assert events == [StartTLS()]
    assert engine.data_to_send().endswith(b"220 2.0.0 Ready to start TLS\r\n")
    assert engine.next_event() is NEED_DATA
    engine.tls_started()
    assert engine.tls_active and engine.helo is None
    pump(engine, b"MAIL FROM:<a@x>\r\n")
    assert engine.data_to_send() == b"503 5.5.1 Error: send HELO/EHLO first\r\n"
    pump(engine, b"STARTTLS\r\n")
    assert codes(engine.data_to_send()) == [554]


def test_data_too_big_is_refused_after_the_terminator() -> None:
    engine = authed_engine(max_message_size=1000)
    body = (b"x" * 98 + b"\r\n") * 50
    events = pump(engine, transaction(body) + b"NOOP\r\n")
    assert [type(e) for e in events] == [MailFrom, RcptTo]
    assert codes(engine.data_to_send())[-2:] == [552, 250]


@pytest.mark.parametrize(
    "body",
    [b"a\nb\r\n", b"a\rb\r\n", b"a\r\n.\nb\r\n", b"x" * 1001 + b"\r\n"],
    ids=["bare-lf", "bare-cr", "lf-dot", "long-line"],
)
def test_malformed_data_is_refused(body: bytes) -> None:
    engine = authed_engine()
    events = pump(engine, transaction(body))
    assert not any(isinstance(e, MessageData) for e in events)
    assert engine.data_to_send().endswith(b"500 5.5.2 Invalid DATA\r\n")


def test_smuggled_terminators_do_not_end_data() -> None:
    engine = authed_engine()
    smuggle = b"a\r\n\n.\n\r\nMAIL FROM:<x@y>\r\nRCPT TO:<v@relay.test>\r\nDATA\r\nevil\r\n"
    events = pump(engine, transaction(smuggle))
    assert [type(e) for e in events] == [MailFrom, RcptTo]
    assert codes(engine.data_to_send()) == [250, 250, 354, 500]


def test_data_split_byte_by_byte() -> None:
    engine = authed_engine()
    script = transaction(b"Subject: y\r\n\r\nbody\r\n")
    events = []
    for i in range(len(script)):
        events += pump(engine, script[i : i + 1])
    assert events[-1].transmission == b"Subject: y\r\n\r\nbody\r\n"


def test_empty_message() -> None:
    engine = authed_engine()
    events = pump(engine, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n.\r\n")
    assert events[-1].transmission == b""


def test_eof_closes() -> None:
    engine = authed_engine()
    pump(engine, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\npartial")
    assert pump(engine, b"") == [Closed("eof")]


def test_shutdown_says_421() -> None:
    engine = make_engine()
    engine.shutdown("4.4.2 relay.test Error: timeout exceeded")
    assert engine.data_to_send() == b"421 4.4.2 relay.test Error: timeout exceeded\r\n"
    assert engine.next_event() == Closed("shutdown")


def test_next_event_refuses_while_deciding() -> None:
    engine = authed_engine()
    engine.receive_data(b"MAIL FROM:<a@x>\r\n")
    assert isinstance(engine.next_event(), MailFrom)
    with pytest.raises(RuntimeError):
        engine.next_event()


def test_bare_lf_commands_are_accepted() -> None:
    engine = make_engine()
    pump(engine, b"NOOP\nNOOP\r\n")
    assert codes(engine.data_to_send()) == [250, 250]


def test_stuff_unstuff_roundtrip() -> None:
    for message in [b"", b".\r\n", b"a\r\n.\r\n..\r\n", b".a\r\nb\r\n", b"x\r\n"]:
        assert unstuff(stuff(message)) == message
    assert stuff(b".a\r\n.\r\n") == b"..a\r\n..\r\n"


def test_undecodable_command_line() -> None:
    engine = make_engine()
    pump(engine, b"MAIL FROM:<\xff@x>\r\nNOOP\r\n")
    assert engine.data_to_send() == b"500 5.5.2 Error: bad UTF-8 syntax\r\n250 2.0.0 Ok\r\n"


def test_a_client_that_only_keeps_the_connection_alive_is_sent_away() -> None:
    engine = make_engine()
    pump(engine, b"EHLO c\r\n")
    engine.data_to_send()
    pump(engine, b"NOOP\r\nRSET\r\nVRFY someone\r\n" * (MAX_JUNK // 3) + b"NOOP\r\n" * 3)
    replies = engine.data_to_send().decode().split("\r\n")[:-1]
    assert replies[:MAX_JUNK] == ["250 2.0.0 Ok", "250 2.0.0 Ok", "252 2.0.0 someone"] * (
        MAX_JUNK // 3
    ) + ["250 2.0.0 Ok"] * (MAX_JUNK % 3)
    assert replies[-1].startswith("421 4.7.0 ") and "too many junk commands" in replies[-1]
    assert isinstance(engine.next_event(), Closed)
