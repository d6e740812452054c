"""The response serializer: quoting, literals, NIL, status lines."""

from __future__ import annotations

from relay.imap import respond
from relay.imap.respond import Atom, Literal, encode


def test_plain_strings_are_quoted_with_escapes():
    assert encode("hello") == b'"hello"'
    assert encode('a "b" \\c') == b'"a \\"b\\" \\\\c"'
    assert encode("") == b'""'


def test_line_breaks_eight_bit_and_long_strings_become_literals():
    assert encode("a\r\nb") == b"{4}\r\na\r\nb"
    assert encode("grüß") == b"{6}\r\ngr\xc3\xbc\xc3\x9f"
    assert encode("x" * 1001) == b"{1001}\r\n" + b"x" * 1001


def test_nil_numbers_atoms_lists_and_forced_literals():
    assert encode([None, 7, Atom("\\Seen"), ["x", []], Literal(b"1111")]) == (
        b'(NIL 7 \\Seen ("x" ()) {4}\r\n1111)'
    )


def test_status_lines():
    assert respond.tagged("a1", "OK", "Done.", "UIDNEXT 4") == b"a1 OK [UIDNEXT 4] Done.\r\n"
    assert respond.status("BYE", "bye\r\nnow") == b"* BYE bye  now\r\n"
    assert respond.untagged(3, Atom("EXISTS")) == b"* 3 EXISTS\r\n"
    assert respond.continuation("idling") == b"+ idling\r\n"


def test_flag_order_is_system_flags_first():
    assert respond.flag_list({"$Label", "\\Seen", "\\Answered"}) == (
        "\\Answered",
        "\\Seen",
        "$Label",
    )
