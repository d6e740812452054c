"""relay.mime.header_info reads a header block field for field as the stdlib parser does under
compat32 (the policy, FETCH and SEARCH all ask it): checked on random blocks built from the
pieces that make parsers disagree (bare CR or LF, folding, empty or odd field names, "From "
lines, 8-bit bytes, a missing or doubled closing empty line)."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from hypothesis import example, given, settings
from hypothesis import strategies as st

from relay.mime import header_info

STDLIB = BytesHeaderParser(policy=compat32)

names = st.sampled_from(
    [b"From", b"To", b"Content-Type", b"content-type", b"X-A", b"From ", b"", b" Subject", b"A B"]
)
values = st.lists(
    st.sampled_from(
        [b"", b" ", b"\t", b"a@b", b'x; boundary="q"', b"\xc3\xa9", b":", b"\r", b"\n", b"=?"]
    ),
    max_size=4,
).map(b"".join)
field_lines = st.tuples(names, st.sampled_from([b":", b": ", b":\t"]), values).map(b"".join)
continuations = st.tuples(st.sampled_from([b" ", b"\t", b"  "]), values).map(b"".join)
lines = st.lists(st.one_of(field_lines, continuations, st.just(b"")), max_size=8)
endings = st.sampled_from([b"", b"\r\n", b"\r\n\r\n", b"\n", b"\n\n", b"\r\n\r\n\r\n"])


@settings(max_examples=3000, deadline=None)
@given(lines, st.sampled_from([b"\r\n", b"\n", b"\r"]), endings)
@example([b"Subject: a", b" b", b"\tc"], b"\r\n", b"\r\n\r\n")
@example([b"Content-Type: multipart/encrypted;", b' boundary="x"'], b"\r\n", b"")
def test_reads_every_block_as_the_stdlib_parser(
    block: list[bytes], separator: bytes, ending: bytes
) -> None:
    head = separator.join(block) + ending
    expected = STDLIB.parsebytes(head)
    got = header_info(head)
    assert got.items() == expected.items()
    assert got.get_content_type() == expected.get_content_type()
    assert got.get_params() == expected.get_params()


def test_a_well_formed_block_keeps_folding_and_8bit_bytes_as_the_stdlib_parser() -> None:
    head = b"Subject: caf\xc3\xa9\r\n  folded\r\nTo:x@y\r\n\r\n"
    info = header_info(head)
    assert [(name, str(value)) for name, value in info.items()] == [
        ("Subject", "caf\ufffd\ufffd\r\n  folded"),  # compat32 shows 8-bit bytes so
        ("To", "x@y"),
    ]
    assert info.get_all("Subject") == STDLIB.parsebytes(head).get_all("Subject")
