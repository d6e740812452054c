"""Hostile input, part 4: no parser is quadratic in its input, and none recurses per nesting level.

Each case builds an input of size n, 2n and 4n and takes the best of several runs of the parser
on each; doubling the input may at most roughly double the time (a ratio under 3 per doubling,
so a loaded machine does not fail it, while quadratic behaviour, a ratio of 4, does). The base
n is grown until one run takes a few milliseconds, so timer noise does not decide. Where the
grammar nests, 10,000 levels must end in the parser's own error (or a result), not in
RecursionError. The MIME code of relay/imap/message_parts.py and relay/policy/structure.py has
its own tests.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from relay import config as relay_config
from relay.imap.commands import CommandError, parse_command
from relay.imap.engine import NEED_DATA, ServerEngine
from relay.imap.fetchspec import parse_fetch_atts
from relay.imap.grammar import Cursor, ParseError
from relay.imap.searchkeys import matches, parse_search
from relay.imap.seqset import parse_seqset
from relay.policy import checks, openpgp
from relay.smtp import syntax
from relay.smtp.dataframe import DataReader
from relay.smtp.engine import SMTPEngine, State
from relay.smtp.events import NEED_DATA as SMTP_NEED_DATA
from tests.fuzz import targets
from tests.policy.corpus import new_packet, pgp_mime

MIN_RUN = 0.002  # the smallest input is grown until one run takes this long (or 1024 x)
MIN_SECONDS = 0.005  # and run this often that a measurement takes at least this long
MAX_RATIO = 3.0  # per doubling; linear is 2, quadratic 4
DEPTH = 10_000


def _seconds_per_run(run: Callable[[object], object], value: object, loops: int) -> float:
    """The best of five measurements of `loops` runs, per run (without the cyclic garbage
    collector, whose full collections cost more the more objects exist, whatever made them)."""
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(loops):
                run(value)
            best = min(best, time.perf_counter() - started)
    finally:
        gc.enable()
    return best / loops


def assert_linear(make: Callable[[int], object], run: Callable[[object], object], n: int) -> None:
    limit = n * 1024
    while n < limit and _seconds_per_run(run, make(n), 1) < MIN_RUN:
        n *= 2
    loops = max(1, int(MIN_SECONDS / _seconds_per_run(run, make(n), 1)))
    for _attempt in range(5):  # measured again before calling it quadratic (a loaded CI box)
        times = [
            _seconds_per_run(run, make(size), max(1, loops // factor))
            for size, factor in ((n, 1), (2 * n, 2), (4 * n, 4))
        ]
        ratios = [times[1] / times[0], times[2] / times[1]]
        if max(ratios) < MAX_RATIO:
            return
    pytest.fail(f"not linear: n={n}: {[f'{t * 1000:.2f} ms' for t in times]}, ratios {ratios}")


# -- SMTP -------------------------------------------------------------------------------------


def _smtp_session(data: bytes) -> None:
    engine = SMTPEngine("relay.test", max_message_size=1 << 30, max_recipients=1 << 30)
    engine.authenticated = "a@relay.test"
    for start in range(0, len(data), 4096):
        engine.receive_data(data[start : start + 4096])
        while engine.next_event() is not SMTP_NEED_DATA:
            if engine.state is State.DECIDING:
                engine.accept()
            elif engine.state is State.CLOSED:
                return
        engine.data_to_send()


SMTP_CASES = {
    "long address": (
        lambda n: "FROM:<" + "a" * n + "@relay.test>",
        lambda a: syntax.parse_path_and_params(a, "FROM"),
    ),
    "many parameters": (
        lambda n: "FROM:<a@b> " + "X-A=1 " * n,
        lambda a: syntax.parse_params(a[11:]),
    ),
    "long SASL PLAIN": (
        lambda n: base64.b64encode(b"\0" + b"u" * n + b"\0pw").decode(),
        syntax.parse_plain_response,
    ),
    "pipelined recipients": (
        lambda n: b"EHLO c\r\nMAIL FROM:<a@relay.test>\r\n" + b"RCPT TO:<b@x.org>\r\n" * n,
        _smtp_session,
    ),
    "DATA of many lines": (
        lambda n: (
            b"EHLO c\r\nMAIL FROM:<a@relay.test>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"
            + b"line of text\r\n.dot\r\n" * n
            + b".\r\nQUIT\r\n"
        ),
        _smtp_session,
    ),
}


@pytest.mark.parametrize("case", SMTP_CASES)
def test_smtp_parsers_are_linear(case: str) -> None:
    make, run = SMTP_CASES[case]
    assert_linear(make, run, 100)


def _data_reader(chunks: list[bytes]) -> None:
    reader = DataReader(1 << 30)
    for chunk in chunks:
        reader.feed(chunk)


@pytest.mark.parametrize("chunk", [1, 100, 65536])
def test_the_data_reader_is_linear_in_bytes_however_they_arrive(chunk: int) -> None:
    def make(n: int) -> list[bytes]:
        body = b"x" * 70 + b"\r\n" + b"." * 10 + b"\r\n"
        data = body * n + b".\r\n"
        return [data[i : i + chunk] for i in range(0, len(data), chunk)]

    assert_linear(make, _data_reader, 10)


# -- IMAP -------------------------------------------------------------------------------------


def _imap_engine(data: bytes) -> None:
    engine = ServerEngine(max_command=1 << 30, max_message=1 << 30)
    for start in range(0, len(data), 4096):
        engine.receive_data(data[start : start + 4096])
        while engine.next_event() is not NEED_DATA:
            pass


def _command(data: bytes) -> None:
    with contextlib.suppress(CommandError):
        parse_command(data)


CANDIDATE = targets.CANDIDATES[0]


def _search(data: bytes) -> None:
    _charset, key = parse_search(Cursor(data))
    matches(key, CANDIDATE)


def _ranges_over_messages(data: bytes) -> None:
    """select() and contains() over about as many messages as there are ranges: scanning the
    ranges per message (as they once did) is quadratic here."""
    count = data.count(b",") + 1
    seqset = parse_seqset(Cursor(data))
    values = list(range(1, 2 * count + 1))
    seqset.select(values, 0)
    for v in values:
        seqset.contains(v, 0)


IMAP_CASES = {
    "pipelined commands": (lambda n: b"a1 NOOP\r\n" * n, _imap_engine),
    "many literals": (lambda n: b"a LOGIN" + b" {3+}\r\nabc" * n + b"\r\n", _imap_engine),
    "many literals, no space": (lambda n: b"x" + b"{3+}\r\nabc" * n + b"\r\n", _imap_engine),
    "long quoted string": (lambda n: b'a LOGIN "' + b"\\\\x" * n + b'" p\r\n', _command),
    "long literal": (lambda n: b"a LOGIN {%d+}\r\n" % (3 * n) + b"abc" * n + b" p\r\n", _command),
    "many flags": (lambda n: b"a STORE 1 +FLAGS (" + b"\\Seen $Label " * n + b")\r\n", _command),
    "many ID parameters": (lambda n: b"a ID (" + b'"k" "v" ' * n + b")\r\n", _command),
    "many header fields": (
        lambda n: b"(BODY.PEEK[HEADER.FIELDS (" + b"CHAT-VERSION " * n + b")])",
        lambda d: parse_fetch_atts(Cursor(d)),
    ),
    "many fetch attributes": (
        lambda n: b"(" + b"UID FLAGS BODY.PEEK[1.2.MIME]<0.100> " * n + b")",
        lambda d: parse_fetch_atts(Cursor(d)),
    ),
    "many empty literals, no space": (lambda n: b"x" + b"{0+}\r\n" * n + b"\r\n", _imap_engine),
    "many sequence ranges": (
        lambda n: b",".join(b"%d:%d" % (i, i + 3) for i in range(1, 4 * n, 4)),
        lambda d: parse_seqset(Cursor(d)).select(list(range(1, 4000)), 4000),
    ),
    "many search keys": (lambda n: b"UNSEEN FROM alice LARGER 10 UID 1:* " * n + b"ALL", _search),
    "long OR chain": (lambda n: b"OR SEEN " * min(n, 100) + b"ALL" + b" SEEN" * n, _search),
    "long search string": (lambda n: b'TEXT "' + b"hello " * n + b'"', _search),
    "many METADATA entries": (
        lambda n: b"a SETMETADATA INBOX (" + b'/private/x "v" ' * n + b")\r\n",
        _command,
    ),
}


@pytest.mark.parametrize("case", IMAP_CASES)
def test_imap_parsers_are_linear(case: str) -> None:
    make, run = IMAP_CASES[case]
    assert_linear(make, run, 50)


def test_sequence_sets_are_linear_in_ranges_times_messages() -> None:
    """Ranges repeated, reversed and scattered over about as many messages: merged, sorted and
    bisected, not scanned once per message (which was quadratic)."""

    def make(n: int) -> bytes:
        return b",".join([b"*:1"] * (n // 4) + [b"%d" % (2 * i) for i in range(n, 0, -1)])

    assert_linear(make, _ranges_over_messages, 4000)


NESTED_IMAP = {
    "search parentheses": b"a SEARCH " + b"(" * DEPTH + b"ALL" + b")" * DEPTH + b"\r\n",
    "search NOT chain": b"a SEARCH " + b"NOT " * DEPTH + b"ALL\r\n",
    "search OR chain": b"a SEARCH " + b"OR ALL " * DEPTH + b"ALL\r\n",
    "flag list": b"a STORE 1 FLAGS " + b"(" * DEPTH + b")" * DEPTH + b"\r\n",
    "fetch attributes": b"a FETCH 1 " + b"(" * DEPTH + b"FLAGS" + b")" * DEPTH + b"\r\n",
    "ID list": b"a ID " + b"(" * DEPTH + b")" * DEPTH + b"\r\n",
}


@pytest.mark.parametrize("case", NESTED_IMAP)
def test_deep_nesting_is_a_parse_error_not_a_recursion_error(case: str) -> None:
    data = NESTED_IMAP[case]
    with pytest.raises(CommandError):
        parse_command(data)
    engine = ServerEngine(max_command=1 << 20)
    engine.receive_data(data)
    assert type(engine.next_event()).__name__ == "BadCommand"


def test_deep_search_nesting_parses_or_fails_cleanly_below_the_limit() -> None:
    # What a client could mean by nesting stays usable: a few levels parse and evaluate.
    _charset, key = parse_search(Cursor(b"(" * 20 + b"NOT SEEN" + b")" * 20))
    assert isinstance(matches(key, CANDIDATE), bool)
    with pytest.raises(ParseError):
        parse_search(Cursor(b"(" * DEPTH))


# -- policy -----------------------------------------------------------------------------------


def _armor(n: int) -> bytes:
    packets = new_packet(3, bytes([6]) + b"\x11" * 30) * n + new_packet(
        18, bytes([2]) + b"\x42" * 100
    )
    text = base64.b64encode(packets)
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (
        b"-----BEGIN PGP MESSAGE-----\r\n\r\n"
        + b"\r\n".join(lines)
        + b"\r\n-----END PGP MESSAGE-----\r\n"
    )


def _partial_seipd(n: int) -> bytes:
    """PKESK, then a SEIPD v2 in n partial chunks of 512 octets and a final one of 10."""
    body = b"\x02" + b"\x42" * (512 * n - 1)
    chunks = b"".join(b"\xe9" + body[i : i + 512] for i in range(0, len(body), 512))
    return new_packet(1, bytes([3]) + b"\x00" * 40) + b"\xd2" + chunks + b"\x0a" + b"\x01" * 10


POLICY_CASES = {
    "armor lines and session keys": (
        _armor,
        lambda d: openpgp.check_encrypted_packets(openpgp.dearmor(d, allow_headers=False)),
    ),
    "partial body lengths": (_partial_seipd, openpgp.check_encrypted_packets),
    "the PGP gate on a large payload": (
        lambda n: pgp_mime(_armor(n).decode()),
        lambda d: checks.check_incoming(d, "alice0001@[127.0.0.1]", ["bob000001@[127.0.0.1]"]),
    ),
}


@pytest.mark.parametrize("case", POLICY_CASES)
def test_policy_parsers_are_linear(case: str) -> None:
    make, run = POLICY_CASES[case]
    assert_linear(make, run, 20)


# -- web, config, boot settings ---------------------------------------------------------------


def _mxdeliv_recipients(n: int) -> bytes:
    to = ", ".join(f"user{i:05d}@chat.example.org" for i in range(n))
    return f"X-Mail-From: a@other.example\r\nX-Mail-To: {to}\r\n\r\n".encode() + b"x\r\n"


WEB_CASES = {
    "pipelined requests": (
        lambda n: (
            b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: chat.example.org\r\n\r\n" * min(n, 999)
        ),
        targets.TARGETS["http"].run,
    ),
    "many header lines": (
        lambda n: b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * min(n, 1500) + b"\r\n",
        targets.TARGETS["http"].run,
    ),
    "mxdeliv recipients": (_mxdeliv_recipients, targets.TARGETS["mxdeliv"].run),
    "mxdeliv body": (
        lambda n: (
            b"X-Mail-From: a@b.org\r\nX-Mail-To: u@chat.example.org\r\n\r\n" + b"line\r\n" * n
        ),
        targets.TARGETS["mxdeliv"].run,
    ),
}


@pytest.mark.parametrize("case", WEB_CASES)
def test_web_parsers_are_linear(case: str) -> None:
    make, run = WEB_CASES[case]
    assert_linear(make, run, 20)


def _load_config(tmp_path: Path) -> Callable[[object], object]:
    path = tmp_path / "relay.toml"

    def load(text: object) -> None:
        assert isinstance(text, str)
        path.write_text(text)
        with contextlib.suppress(relay_config.ConfigError):
            relay_config.load(path)

    return load


def test_config_loading_is_linear(tmp_path: Path) -> None:
    def make(n: int) -> str:
        domains = ", ".join(f'"peer{i}.example.org"' for i in range(n))
        return (
            f'mail_domain = "a.org"\ndata_dir = "d"\n[federation]\npolicy_domains = [{domains}]\n'
        )

    assert_linear(make, _load_config(tmp_path), 50)


@pytest.mark.parametrize("opening", ["[", "{a = "])
def test_deeply_nested_toml_is_a_config_error(tmp_path: Path, opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    path = tmp_path / "relay.toml"
    path.write_text(
        'mail_domain = "a.org"\ndata_dir = "d"\nx = ' + opening * DEPTH + "1" + closing * DEPTH
    )
    with pytest.raises(relay_config.ConfigError):
        relay_config.load(path)


def test_boot_settings_parsing_is_linear() -> None:
    setup = targets.load_setup_script()

    def make(n: int) -> str:
        return "hostname=haus7\nwifi_country=de\n# comment\nbad line\n" * n

    assert_linear(make, lambda text: setup.parse_settings(text), 50)
