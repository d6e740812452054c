"""Header addresses with domain literals, which LAN-mode relays use, parse on every Python."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.addresses import parse_addresses, parse_rfc5322
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
        "a@[ ",  # UnboundLocalError inside the stdlib parser (found by the property test below)
    ],
)
def test_values_the_stdlib_parser_trips_over_are_no_addresses(value: str) -> None:
    """Found by the fuzzer (tests/fuzz): the stdlib parser raised AttributeError (or another
    internal error) on these, which
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


@pytest.mark.parametrize("sender", ["abcdefghi@[IPv6:::1]", "abcdefghi@[ipv6:::1]"])
def test_an_ipv6_lan_sender_passes_the_from_check(sender: str) -> None:
    message = f"From: <{sender}>\r\nTo: x@[IPv6:::1]\r\nSubject: x\r\n\r\nhi\r\n".encode()
    decision = check_outgoing(message, "abcdefghi@[IPv6:::1]", ["x@[IPv6:::1]"])
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


_PIECES = ["a", "Z9", "_", "+", "-", ".", "@", "[", "]", "255", "<", ">", '"', "\\", " ", "\t",
           "=?", "=?utf-8?q?x?=", ",", ";", ":", "(", ")", "é", "\r\n ", "[10.0.0.2]", "b-c.org",
           "[IPv6:", "ipv6:", "::1", "fd00::2", "::ffff:10.0.0.2", "[IPv6:::1]"]  # fmt: skip
_text = st.lists(st.sampled_from(_PIECES), max_size=6).map("".join)
_space = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def _one_address(draw: st.DrawFn) -> str:
    """Mostly the shape of the fast path, with pieces that may break it anywhere."""
    local = draw(st.one_of(st.sampled_from(["a", "x.y", "a+b_c-d", "Z9"]), _text))
    domain = draw(
        st.one_of(
            st.sampled_from(["b-c.org", "[10.0.0.2]", "x", "[IPv6:::1]", "[ipv6:FD00::2]"]), _text
        )
    )
    addr = local + "@" + domain
    if draw(st.booleans()):
        return draw(_space) + addr + draw(_space)
    name = draw(st.one_of(st.just(""), _text.map(lambda t: f'"{t}"' + draw(_space))))
    return draw(_space) + name + draw(_space) + "<" + addr + ">" + draw(_space)


@settings(max_examples=4000, deadline=None)
@given(st.one_of(_one_address(), _text))
def test_the_fast_path_reads_what_the_rfc5322_parser_reads(value: str) -> None:
    assert parse_addresses(value) == parse_rfc5322(value)


@pytest.mark.parametrize(
    "value",
    [
        '"Alice" <alice@example.org>',
        "<abcdefghi@[10.0.2.15]>",
        "<abcdefghi@[IPv6:::1]>",
        "a@[IPv6:fd00::ffff:10.0.0.2]",
        "a.b+c@d-e.f",
        ' "" <x@y> ',
    ],
)
def test_the_forms_clients_write_agree_with_the_rfc5322_parser(value: str) -> None:
    assert parse_addresses(value) == parse_rfc5322(value) != []


@pytest.mark.parametrize(
    "value",
    ["<a@[IPv6:::1 ]>", "a@[IPv6:::1]x", "<a@[IPv6:]>", "a@[IPv6:zz::1]", "<a@[IPv6 :::1]>"],
)
def test_ipv6_literals_near_the_fast_path_agree_with_the_rfc5322_parser(value: str) -> None:
    assert parse_addresses(value) == parse_rfc5322(value)
