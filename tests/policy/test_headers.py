"""Header clean-up on submission and before local storage."""

from __future__ import annotations

from relay.policy.headers import clean_for_storage, clean_submitted

MESSAGE = (
    b"Received: from phone ([10.1.2.3])\r\n\tby relay; Mon, 1 Jan 2024\r\n"
    b"From: <a@x>\r\n"
    b"Subject: secret plans\r\n\tcontinued\r\n"
    b"X-Mailer: Foo 1.0\r\n"
    b"User-Agent: Bar\r\n"
    b"X-Originating-IP: [10.1.2.3]\r\n"
    b"DKIM-Signature: v=1; d=x;\r\n b=abc\r\n"
    b"Authentication-Results: x; dkim=pass\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"Received: this is body text\r\nSubject: also body\r\n"
)


def test_submitted_mail_loses_identifying_headers_and_subject() -> None:
    cleaned = clean_submitted(MESSAGE)
    head, body = cleaned.split(b"\r\n\r\n", 1)
    assert head == (
        b"From: <a@x>\r\n"
        b"Subject: [...]\r\n"
        b"DKIM-Signature: v=1; d=x;\r\n b=abc\r\n"
        b"Authentication-Results: x; dkim=pass\r\n"
        b"Content-Type: text/plain"
    )
    assert body == b"Received: this is body text\r\nSubject: also body\r\n"


def test_stored_mail_loses_transit_headers() -> None:
    head = clean_for_storage(MESSAGE).split(b"\r\n\r\n", 1)[0]
    assert b"DKIM-Signature" not in head and b"Authentication-Results" not in head
    assert b"Received" not in head
    assert b"Subject: secret plans\r\n\tcontinued" in head


def test_duplicate_subjects_collapse_and_headerless_input_is_untouched() -> None:
    cleaned = clean_submitted(b"Subject: a\r\nSubject: b\r\n\r\nbody\r\n")
    assert cleaned == b"Subject: [...]\r\n\r\nbody\r\n"
    assert clean_submitted(b"\r\nbody\r\n") == b"\r\nbody\r\n"
