"""Byte scripts for the sans-IO IMAP engine: framing, literals, limits, modes, grammar."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from relay.imap.commands import Append, Fetch, GetMetadata, Search, Store
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
from relay.imap.fetchspec import FetchAtt, Section
from relay.imap.searchkeys import Key
from relay.imap.seqset import STAR, SeqSet


def events(engine: ServerEngine, data: bytes) -> list:
    engine.receive_data(data)
    out = []
    while (event := engine.next_event()) is not NEED_DATA:
        out.append(event)
        if isinstance(event, Closed | Fatal):
            break
    return out


def command(data: bytes, **engine_args: int):
    (event,) = events(ServerEngine(**engine_args), data)
    assert isinstance(event, CommandReceived), event
    return event.command


# -- framing -----------------------------------------------------------------------------------


def test_crlf_and_bare_lf_commands_are_both_accepted():
    engine = ServerEngine()
    got = events(engine, b"a1 NOOP\r\na2 CAPABILITY\na3 LOGOUT\r\n")
    assert [e.command.name for e in got] == ["NOOP", "CAPABILITY", "LOGOUT"]
    assert [e.command.tag for e in got] == ["a1", "a2", "a3"]


def test_a_command_split_at_every_byte_gives_the_same_result():
    script = b'x1 LOGIN {5}\r\nalice "pa\\"ss"\r\nx2 SELECT INBOX\r\n'
    engine = ServerEngine()
    got = []
    for i in range(len(script)):
        got += events(engine, script[i : i + 1])
    commands = [e.command for e in got if isinstance(e, CommandReceived)]
    assert commands[0].args == (b"alice", b'pa"ss')
    assert commands[1].args == ("INBOX", ())
    assert sum(isinstance(e, ContinueLiteral) for e in got) == 1


def test_synchronizing_literal_asks_for_continuation_before_the_bytes():
    engine = ServerEngine()
    assert events(engine, b"a LOGIN {5}\r\n") == [ContinueLiteral()]
    got = events(engine, b"alice {3}\r\n")
    assert got == [ContinueLiteral()]
    (done,) = events(engine, b"p\r\n\r\n")
    assert done.command.args == (b"alice", b"p\r\n")


def test_literal_plus_needs_no_continuation():
    got = events(ServerEngine(), b"a LOGIN {5+}\r\nalice {4+}\r\npass\r\n")
    assert len(got) == 1 and got[0].command.args == (b"alice", b"pass")


def test_stray_empty_lines_between_commands_are_ignored():
    got = events(ServerEngine(), b"\r\n\na NOOP\r\n")
    assert [e.command.name for e in got] == ["NOOP"]


def test_end_of_input_is_reported_after_complete_commands():
    engine = ServerEngine()
    engine.receive_data(b"a NOOP\r\nb NO")
    engine.receive_data(b"")
    assert isinstance(engine.next_event(), CommandReceived)
    assert isinstance(engine.next_event(), Closed)


# -- limits ------------------------------------------------------------------------------------


def test_too_long_line_is_fatal_without_waiting_for_its_end():
    engine = ServerEngine(max_command=1024)
    (event,) = events(engine, b"a NOOP " + b"x" * 2000)
    assert isinstance(event, Fatal)


def test_oversized_synchronizing_literal_is_refused_and_the_session_goes_on():
    engine = ServerEngine(max_message=100)
    assert events(engine, b"a7 APPEND INBOX {101}\r\n") == [LiteralTooBig("a7")]
    (ok,) = events(engine, b"a8 NOOP\r\n")
    assert ok.command.tag == "a8"


def test_oversized_non_synchronizing_literal_is_skipped_then_refused():
    engine = ServerEngine(max_message=10)
    got = events(engine, b"a1 APPEND INBOX {20+}\r\n" + b"y" * 20 + b"\r\na2 NOOP\r\n")
    assert got[0] == LiteralTooBig("a1")
    assert got[1].command.tag == "a2"


def test_message_sized_literals_only_for_append():
    engine = ServerEngine(max_command=1000, max_message=100_000)
    assert events(engine, b"a LOGIN {5000}\r\n") == [LiteralTooBig("a")]
    assert events(engine, b"b APPEND INBOX {5000}\r\n") == [ContinueLiteral()]
    (append,) = events(engine, b"z" * 5000 + b"\r\n")
    assert isinstance(append.command.args[0], Append)
    assert append.command.args[0].message == b"z" * 5000


def test_append_literal_before_login_is_capped_at_the_command_size():
    engine = ServerEngine(max_command=1000)  # max_message 0: not logged in
    assert events(engine, b"b APPEND INBOX {5000}\r\n") == [LiteralTooBig("b")]


# -- modes -------------------------------------------------------------------------------------


def test_many_literals_in_one_command_are_framed_in_linear_time():
    """Each literal used to re-match the whole command so far to tell an APPEND (quadratic:
    20,000 literals in a tag without spaces took seconds); now the first line decides."""
    # How the time grows with the count is measured in tests/fuzz/test_complexity.py ("many
    # empty literals, no space"); here the outcome.
    engine = ServerEngine(max_command=1 << 20)
    got = events(engine, b"x" + b"{0+}\r\n" * 20_000 + b"\r\n")
    assert [type(e) for e in got] == [BadCommand]
    (event,) = events(
        ServerEngine(max_command=30, max_message=100),
        b"a APPEND INBOX {50+}\r\n" + b"x" * 50 + b"\r\n",
    )
    assert isinstance(event, CommandReceived)  # over the command limit, within the message limit


def test_idle_mode_accepts_done_in_any_case_and_reports_anything_else():
    engine = ServerEngine()
    engine.expect_idle_done()
    assert events(engine, b"done\r\n") == [IdleDone(True)]
    engine.expect_idle_done()
    assert events(engine, b"a NOOP\r\n") == [IdleDone(False)]
    assert events(engine, b"b NOOP\n")[0].command.tag == "b"


def test_authenticate_mode_hands_out_one_line():
    engine = ServerEngine()
    engine.expect_auth_response()
    assert events(engine, b"AGFsaWNlAHB3\r\n") == [AuthResponse(b"AGFsaWNlAHB3")]


# -- grammar -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "tag", "message"),
    [
        (b"a1 FROB\r\n", "a1", "Unknown command FROB"),
        (b"a2 UID NOOP\r\n", "a2", "Unknown UID command NOOP"),
        (b"+ NOOP\r\n", None, ""),
        (b'a3 LOGIN "unterminated\r\n', "a3", "Line break inside quoted"),
        (b"a4 FETCH 0 FLAGS\r\n", "a4", "Invalid sequence set"),
        (b"a5 NOOP extra\r\n", "a5", "Unexpected data"),
        # Found by fuzzing: numbers too large for datetime raised OverflowError, not BAD.
        (b"a6 SEARCH SINCE 1-Feb-99999999999999999999\r\n", "a6", "Bad date"),
        (
            b'a7 APPEND x "1-Feb-2024 99999999999999999999:00:00 +0000" {1+}\r\nx\r\n',
            "a7",
            "Bad date-time",
        ),
    ],
)
def test_malformed_commands_get_bad_with_the_tag(raw, tag, message):
    (event,) = events(ServerEngine(), raw)
    assert isinstance(event, BadCommand)
    assert event.tag == tag
    assert message in event.message


def test_delta_chat_prefetch_fetch():
    cmd = command(
        b"A0007 UID FETCH 5:504 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE "
        b"X-MICROSOFT-ORIGINAL-MESSAGE-ID FROM CONTENT-TYPE SECURE-JOIN CHAT-VERSION "
        b"CHAT-IS-POST-MESSAGE AUTOCRYPT-SETUP-MESSAGE)])\r\n"
    )
    assert cmd.uid and cmd.name == "FETCH"
    fetch: Fetch = cmd.args[0]
    assert fetch.seqset == SeqSet(((5, 504),))
    assert [a.name for a in fetch.atts] == ["UID", "RFC822.SIZE", "BODY"]
    section = fetch.atts[2].section
    assert fetch.atts[2].peek and section.text == "HEADER.FIELDS"
    assert section.fields[0] == "MESSAGE-ID" and len(section.fields) == 9


def test_fetch_sections_partials_and_macros():
    fetch = command(b"a FETCH 1:*,3 (BODY[1.2.MIME] BODY[]<10.20> BODY[TEXT] RFC822)\r\n").args[0]
    assert fetch.seqset == SeqSet(((1, STAR), (3, 3)))
    assert fetch.atts == (
        FetchAtt("BODY", Section((1, 2), "MIME")),
        FetchAtt("BODY", Section(), partial=(10, 20)),
        FetchAtt("BODY", Section((), "TEXT")),
        FetchAtt("RFC822"),
    )
    assert fetch.atts[1].response_name() == "BODY[]<10>"
    fast = command(b"a FETCH 1 FAST\r\n").args[0]
    assert [a.name for a in fast.atts] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    changed = command(b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12)\r\n").args[0]
    assert changed.changedsince == 12


def test_header_field_names_from_strings_are_checked_and_echoed_as_imap():
    """Found by fuzzing: a name given as a literal or quoted string was echoed as it was, so
    the response could carry spaces, brackets or even CRLF."""
    fetch = command(b'a FETCH 1 BODY.PEEK[HEADER.FIELDS (Subject "X-A(B" {3+}\r\nA]B)]\r\n').args[0]
    (att,) = fetch.atts
    assert att.section.fields == ("Subject", "X-A(B", "A]B")
    assert att.response_name() == 'BODY[HEADER.FIELDS (Subject "X-A(B" "A]B")]'
    for bad in (b'"two words"', b"{4}\r\nA\r\nB", b'"caf\xc3\xa9"', b'"a:b"'):
        *_, event = events(ServerEngine(), b"a FETCH 1 BODY[HEADER.FIELDS (" + bad + b")]\r\n")
        assert isinstance(event, BadCommand) and "header field name" in event.message, bad


def test_store_forms():
    st: Store = command(b"a UID STORE 3:5 +FLAGS.SILENT (\\Deleted \\Seen)\r\n").args[0]
    assert (st.mode, st.silent, st.flags) == ("add", True, ("\\Deleted", "\\Seen"))
    st = command(b"a STORE 1 -FLAGS \\Seen\r\n").args[0]
    assert (st.mode, st.silent, st.flags) == ("remove", False, ("\\Seen",))
    st = command(b"a STORE 1 (UNCHANGEDSINCE 7) FLAGS ()\r\n").args[0]
    assert (st.mode, st.flags, st.unchangedsince) == ("replace", (), 7)


def test_search_keys():
    search: Search = command(
        b'a UID SEARCH CHARSET UTF-8 UNSEEN OR FROM "bob" NOT HEADER Chat-Version 1.0 '
        b"SINCE 1-Feb-2024 UID 4:*\r\n"
    ).args[0]
    assert search.charset == "UTF-8"
    assert search.key.op == "AND"
    unseen, either, since, uid = search.key.args
    assert unseen == Key("UNSEEN")
    assert either == Key(
        "OR", (Key("FROM", ("bob",)), Key("NOT", (Key("HEADER", ("Chat-Version", "1.0")),)))
    )
    assert since.args[0] == datetime(2024, 2, 1, tzinfo=UTC).date()
    assert uid == Key("UID", (SeqSet(((4, STAR),)),))


def test_metadata_commands_as_the_anchor_test_sends_them():
    cmd = command(b'a01 SETMETADATA INBOX (/private/devicetoken "1111" )\n')
    assert cmd.args == ("INBOX", (("/private/devicetoken", b"1111"),))
    get: GetMetadata = command(b"a02 GETMETADATA INBOX /private/devicetoken\n").args[0]
    assert (get.mailbox, get.entries) == ("INBOX", ("/private/devicetoken",))
    get = command(
        b'a3 GETMETADATA (MAXSIZE 100 DEPTH 1) "" (/shared/comment /shared/admin)\r\n'
    ).args[0]
    assert (get.mailbox, get.entries, get.maxsize, get.depth) == (
        "",
        ("/shared/comment", "/shared/admin"),
        100,
        "1",
    )


def test_misc_commands():
    assert command(b'a ID ("name" "Delta Chat")\r\n').args == ({"name": "Delta Chat"},)
    assert command(b"a ID NIL\r\n").args == (None,)
    assert command(b"a SELECT inbox (CONDSTORE)\r\n").args == ("INBOX", ("CONDSTORE",))
    assert command(b"a UID EXPUNGE 1:3\r\n").args == (SeqSet(((1, 3),)),)
    assert command(b'a LIST "" *\r\n').args == ("", "*")
    assert command(b"a STATUS INBOX (UIDNEXT MESSAGES)\r\n").args == (
        "INBOX",
        ("UIDNEXT", "MESSAGES"),
    )
    assert command(b"a AUTHENTICATE PLAIN AGEAYg==\r\n").args == ("PLAIN", b"AGEAYg==")
    append: Append = command(
        b'a APPEND Sent (\\Seen) "05-Jan-2024 10:00:00 +0200" {2+}\r\nhi\r\n'
    ).args[0]
    assert (append.mailbox, append.flags, append.message) == ("Sent", ("\\Seen",), b"hi")
    assert append.date == datetime(2024, 1, 5, 8, 0, tzinfo=UTC)
