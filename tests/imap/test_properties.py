"""Property tests: serializer/parser round trips, a real client's parser as the peer, and
arbitrary input that must never crash the engine."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient.response_parser import parse_response

from relay.imap.engine import (
    NEED_DATA,
    AuthResponse,
    BadCommand,
    Closed,
    CommandReceived,
    ContinueLiteral,
    Fatal,
    IdleDone,
    LiteralTooBig,
    ServerEngine,
)
from relay.imap.fetchspec import FetchAtt, Section, parse_fetch_atts
from relay.imap.grammar import Cursor
from relay.imap.respond import encode
from relay.imap.seqset import STAR, SeqSet, parse_seqset

KNOWN_EVENTS = (
    AuthResponse,
    BadCommand,
    CommandReceived,
    ContinueLiteral,
    Fatal,
    IdleDone,
    LiteralTooBig,
)


def feed(engine: ServerEngine, chunks: list[bytes]) -> list:
    out = []
    for chunk in chunks:
        engine.receive_data(chunk)
        while (event := engine.next_event()) is not NEED_DATA:
            out.append(event)
            if isinstance(event, Closed | Fatal):
                return out
    return out


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


# -- round trips ---------------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_any_string_survives_encode_then_parse(value):
    # NUL cannot be carried in a quoted string or a (non-binary) literal's meaning, but the
    # literal form keeps it byte-exact, which is what matters for message data.
    cur = Cursor(encode(value))
    assert cur.string() == value
    assert cur.at_end()


@given(
    user=st.binary(min_size=1, max_size=80),
    password=st.binary(min_size=1, max_size=80),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_login_arguments_round_trip_through_the_engine(user, password, cuts):
    wire = b"t1 LOGIN " + encode(user) + b" " + encode(password) + b"\r\n"
    # A client waits for "+" before each synchronizing literal; feeding everything at once
    # models LITERAL+ behaviour and checks the framing is identical.
    got = feed(ServerEngine(), chunked(wire, cuts))
    commands = [e for e in got if isinstance(e, CommandReceived)]
    assert len(commands) == 1
    assert commands[0].command.args == (user, password)


seq_numbers = st.one_of(st.just(STAR), st.integers(min_value=1, max_value=2**32 - 1))


@given(st.lists(st.tuples(seq_numbers, seq_numbers), min_size=1, max_size=10))
def test_sequence_sets_round_trip(ranges):
    seqset = SeqSet(tuple(ranges))
    assert parse_seqset(Cursor(seqset.format().encode())) == seqset


@given(
    st.lists(st.tuples(seq_numbers, seq_numbers), min_size=1, max_size=10),
    st.lists(st.integers(min_value=1, max_value=60), unique=True).map(sorted),
    st.integers(min_value=0, max_value=70),
)
def test_select_and_contains_agree_with_the_ranges_as_written(ranges, values, largest):
    seqset = SeqSet(tuple(ranges))
    for _ in range(2):  # the second time from the merged ranges it keeps
        expected = [
            i
            for i, v in enumerate(values)
            if any(lo <= v <= hi for lo, hi in seqset.bounds(largest))
        ]
        assert seqset.select(values, largest) == expected
        assert [i for i, v in enumerate(values) if seqset.contains(v, largest)] == expected


def test_overlapping_ranges_cost_no_more_than_one():
    """select() and contains() went through every range for every message: 16,000 times "1:*"
    (a 64 KiB command) over a large mailbox took O(ranges * messages)."""
    # The cost (linear, not ranges x messages) is measured in tests/fuzz/test_complexity.py
    # (test_sequence_sets_are_linear_in_ranges_times_messages); here the answers.
    seqset = parse_seqset(Cursor(b",".join([b"1:*"] * 16_000)))
    values = list(range(1, 50_001))
    assert seqset.select(values, 50_000) == list(range(50_000))
    assert all(seqset.contains(v, 50_000) for v in range(1, 50_001, 50))
    assert seqset.merged(50_000) == ([1], [50_000])  # 16,000 ranges are one


header_names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z")
sections = st.builds(
    Section,
    part=st.lists(st.integers(min_value=1, max_value=99), max_size=3).map(tuple),
    text=st.sampled_from(["", "HEADER", "TEXT"]),
) | st.builds(
    Section,
    part=st.just(()),
    text=st.sampled_from(["HEADER.FIELDS", "HEADER.FIELDS.NOT"]),
    fields=st.lists(header_names, min_size=1, max_size=5).map(tuple),
)
fetch_atts = st.one_of(
    st.sampled_from(
        ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "RFC822"]
    ).map(FetchAtt),
    st.builds(
        FetchAtt,
        name=st.just("BODY"),
        section=sections,
        partial=st.none()
        | st.tuples(
            st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=10**6)
        ),
        peek=st.booleans(),
    ),
)


@given(st.lists(fetch_atts, min_size=1, max_size=6))
def test_fetch_attribute_lists_round_trip(atts):
    wire = "(" + " ".join(a.format() for a in atts) + ")"
    assert parse_fetch_atts(Cursor(wire.encode())) == tuple(atts)


# -- a real client's parser reads what the serializer writes ------------------------------------

values = st.recursive(
    st.none() | st.integers(min_value=0, max_value=2**63) | st.binary(max_size=50),
    lambda children: st.lists(children, max_size=5),
    max_leaves=20,
)


def as_imaplib_chunks(wire: bytes) -> list:
    """Split a response the way imaplib hands it to imapclient: (text with {n}, literal)."""
    chunks: list = []
    pos = 0
    for match in re.finditer(rb"\{(\d+)\}\r\n", wire):
        if match.start() < pos:
            continue
        size = int(match[1])
        chunks.append(
            (wire[pos : match.start()] + match[0][:-2], wire[match.end() : match.end() + size])
        )
        pos = match.end() + size
    chunks.append(wire[pos:])
    return chunks


def normalised(value):
    if isinstance(value, list):
        return tuple(normalised(v) for v in value)
    return value


def exact(value):
    """A value with its type, all the way down: 1 == True and b"1" != 1 must both show."""
    if isinstance(value, tuple):
        return ("tuple", tuple(exact(v) for v in value))
    return (type(value).__name__, value)


@settings(max_examples=300)
@given(st.lists(values, min_size=1, max_size=4))
def test_imapclient_parses_serialized_values(items):
    """imapclient reads back exactly what was written: strings stay bytes (quoted or literal,
    never an atom it would turn into a number), numbers stay ints, NIL is None, lists tuples."""
    wire = b" ".join(encode(v) for v in items)
    parsed = parse_response(as_imaplib_chunks(wire))
    expected = tuple(normalised(v) for v in items)
    assert exact(parsed) == exact(expected)


# -- robustness ----------------------------------------------------------------------------------

imapish = st.lists(
    st.sampled_from(
        [
            b"a1 ",
            b"UID ",
            b"FETCH ",
            b"LOGIN ",
            b"APPEND INBOX ",
            b"1:*",
            b"(",
            b")",
            b'"',
            b"\\",
            b"{3}\r\n",
            b"{2+}\r\n",
            b"{99999999}\r\n",
            b"\r\n",
            b"\n",
            b"BODY[",
            b"]",
            b"<1.2>",
            b"SEARCH ",
            b"OR ",
            b"NOT ",
            b"HEADER ",
            b"STORE ",
            b"+FLAGS ",
            b"NIL",
            b" ",
            b"*",
        ]
    )
    | st.binary(max_size=20),
    max_size=40,
).map(b"".join)


@settings(max_examples=500)
@given(
    data=st.one_of(st.binary(max_size=2000), imapish),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
    idle=st.booleans(),
)
def test_arbitrary_input_never_crashes(data, cuts, idle):
    engine = ServerEngine(max_command=512, max_message=1024)
    if idle:
        engine.expect_idle_done()
    got = feed(engine, chunked(data, cuts) + [b""])
    assert all(isinstance(e, KNOWN_EVENTS + (Closed,)) for e in got)
    # The input ended, so the engine ends too: with Closed, or earlier with Fatal.
    assert isinstance(got[-1], Closed | Fatal)
    assert isinstance(engine.next_event(), Closed)
