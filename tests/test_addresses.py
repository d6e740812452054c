"""Header addresses with domain literals, which LAN-mode relays use, parse on every Python."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from relay.addresses import parse_addresses
from relay.policy.checks import check_outgoing

ROOT = Path(__file__).resolve().parent.parent


def test_domain_literals_and_display_names() -> None:
    assert parse_addresses("<abcdefghi@[10.0.2.15]>") == [("", "abcdefghi@[10.0.2.15]")]
    assert parse_addresses('"A B" <q@[127.0.0.1]>, c@d.org') == [
        ("A B", "q@[127.0.0.1]"),
        ("", "c@d.org"),
    ]
    assert parse_addresses("") == []


@pytest.mark.parametrize(
    "value",
    [
        "<alice0001@[127.0.0.1U>",  # an unclosed domain literal
        "<a@[1>",
        'ype: application/pgp-encrypted; charset="utf-8"',  # a group with a parameter in it
    ],
)
def test_values_the_stdlib_parser_trips_over_are_no_addresses(value: str) -> None:
    """Found by the fuzzer (tests/fuzz): the stdlib parser raised AttributeError on these, which
    escaped check_incoming/check_outgoing (SMTP dropped the connection, /mxdeliv answered 500
    so the sending relay retried)."""
    assert parse_addresses(value) == []
    message = f"From: {value}\r\nTo: x@y.org\r\n\r\nhi\r\n".encode()
    decision = check_outgoing(message, "a@b.org", ["x@y.org"])
    assert decision.reply is not None and "Invalid FROM" in str(decision.reply)


def test_a_lan_sender_passes_the_from_check() -> None:
    message = b"From: <abcdefghi@[10.0.2.15]>\r\nTo: x@[10.0.2.15]\r\nSubject: x\r\n\r\nhi\r\n"
    decision = check_outgoing(message, "abcdefghi@[10.0.2.15]", ["x@[10.0.2.15]"])
    # refused for being plain text, not for From
    assert "Invalid FROM" not in str(decision.reply)


def test_debians_python_reads_domain_literals_too() -> None:
    """Debian's Python 3.11 (the appliance twin's) parses addresses strictly, as 3.13+ does."""
    python = "/usr/bin/python3"
    if not Path(python).exists():
        pytest.skip(f"{python} is not installed here")
    code = "from relay.addresses import parse_addresses as p; print(p('<a@[10.0.2.15]>'))"
    result = subprocess.run(
        [python, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[('', 'a@[10.0.2.15]')]", result.stderr
