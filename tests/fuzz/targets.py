"""The fuzz targets: one per parser that reads bytes a client, a peer or an operator controls.

Each target takes one input (bytes) and drives a parser the way the relay does. A target may
raise only the parser's own documented error types (`errors`), which the harness treats as a
normal outcome; any other exception is a finding. Some targets also check a property that must
hold for every input (a round trip, or chunked input giving the same result as whole input);
a broken property raises AssertionError, which is a finding too.

`tests/fuzz/run.py` runs a target under atheris (coverage-guided, libFuzzer); the pytest
modules next to this one run every target over its seed corpus without atheris.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.machinery
import importlib.util
import io
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace

import trio

from relay import config as relay_config
from relay import config_edit, proxy_protocol
from relay.config import Config, ConfigError, Limits
from relay.imap import message_parts
from relay.imap.commands import CommandError, parse_command
from relay.imap.engine import (
    NEED_DATA as IMAP_NEED_DATA,
)
from relay.imap.engine import (
    Closed,
    CommandReceived,
    Fatal,
    ServerEngine,
)
from relay.imap.fetchspec import Section, parse_fetch_atts
from relay.imap.grammar import Cursor, ParseError
from relay.imap.searchkeys import (
    Candidate,
    MessageText,
    matches,
    needs_content,
    parse_search,
    uses_modseq,
)
from relay.imap.seqset import parse_seqset
from relay.log import Logger
from relay.net import Peer
from relay.policy import checks, openpgp, structure
from relay.proxy_protocol import ProxyError
from relay.ratelimit import ByteBudget
from relay.smtp import syntax
from relay.smtp.dataframe import TERMINATOR, DataReader
from relay.smtp.engine import SMTPEngine, State
from relay.smtp.events import NEED_DATA as SMTP_NEED_DATA
from relay.smtp.events import Closed as SMTPClosed
from relay.smtp.events import StartTLS
from relay.web import mxdeliv, routes, server
from relay.web.types import Request, Response, text_response

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
SETUP_SCRIPT = REPO / "overlay/usr/libexec/chatmail/chatmail-setup"

# Chunk sizes the stream targets cycle through, so a framer sees a token split at every kind
# of boundary (1-byte reads, odd sizes, and whole lines at once).
CHUNKS = (1, 7, 64, 2, 512, 3, 4096)


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    max_len: int  # -max_len for libFuzzer: inputs of a realistic size for this parser
    errors: tuple[type[BaseException], ...]  # the parser's documented error types
    checks: str  # what the target asserts besides "no other exception" (for docs/fuzzing.md)

    @property
    def corpus(self) -> Path:
        return CORPUS / self.name

    def __call__(self, data: bytes) -> None:
        with contextlib.suppress(self.errors):
            self.run(data)


TARGETS: dict[str, Target] = {}


def target(
    name: str, *, max_len: int, errors: tuple[type[BaseException], ...] = (), checks: str = ""
) -> Callable[[Callable[[bytes], None]], Callable[[bytes], None]]:
    def register(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
        TARGETS[name] = Target(name, fn, max_len, errors, checks)
        return fn

    return register


def chunked(data: bytes) -> Iterator[bytes]:
    pos, i = 0, 0
    while pos < len(data):
        size = CHUNKS[i % len(CHUNKS)]
        yield data[pos : pos + size]
        pos += size
        i += 1


# -- SMTP -----------------------------------------------------------------------------------


@target(
    "smtp_syntax",
    max_len=2048,
    errors=(syntax.SyntaxProblem,),
    checks="an address comes back without space, <, > or control characters; parameter "
    "names are upper-cased atoms; SASL PLAIN decoding",
)
def smtp_syntax(data: bytes) -> None:
    text = data.decode("utf-8", "replace")  # the engine hands over decoded command lines
    for keyword in ("FROM", "TO"):
        with contextlib.suppress(syntax.SyntaxProblem):
            path, params = syntax.parse_path_and_params(text, keyword)
            assert not any(c in path for c in " <>\t"), path
            assert all(ord(c) >= 32 and ord(c) != 127 for c in path), path
            assert all(k == k.upper() for k in params), params
            syntax.mail_param_problem(params, 10_000_000)
    with contextlib.suppress(syntax.SyntaxProblem):
        syntax.decode_b64_text(text)
    syntax.parse_plain_response(text)


def _smtp_engine(data: bytes, **options: bool) -> None:
    engine = SMTPEngine("relay.test", max_message_size=64 * 1024, max_recipients=50, **options)
    for chunk in [*chunked(data), b""]:
        if engine.state is State.CLOSED:
            break
        engine.receive_data(chunk)
        while True:
            event = engine.next_event()
            if event is SMTP_NEED_DATA or isinstance(event, SMTPClosed):
                break
            if isinstance(event, StartTLS):
                engine.tls_started()  # as if the handshake succeeded
            elif engine.state is State.DECIDING:
                # Refuse some decisions too, so the paths after a rejection are reached.
                if len(engine.recipients) % 3 == 2:
                    engine.reject(550, "5.7.1 no")
                else:
                    engine.accept()
        engine.data_to_send()


@target(
    "smtp_engine",
    max_len=16 * 1024,
    checks="raw client bytes in chunks of varying size (commands, AUTH, DATA, pipelining, "
    "STARTTLS); every decision accepted or refused; no exception at all",
)
def smtp_engine(data: bytes) -> None:
    _smtp_engine(data, tls_active=True, require_auth=True)
    port25 = dict(offer_auth=False, require_auth=False, require_tls=True)
    _smtp_engine(data, tls_active=False, **port25)  # before STARTTLS
    _smtp_engine(data, tls_active=True, **port25)  # after it


def _read_data(pieces: Iterator[bytes], max_size: int) -> tuple:
    """(result, bytes after the terminator) as the engine sees them, or (None, None)."""
    reader = DataReader(max_size)
    for piece in pieces:
        rest = reader.feed(piece)
        if rest is not None:
            return reader.result, rest + b"".join(pieces)  # what the next reads bring
    return None, None


@target(
    "smtp_data",
    max_len=32 * 1024,
    checks="the DATA reader gives the same result for the input whole and in chunks; only "
    "CRLF.CRLF ends it; an accepted body has CRLF line ends only, lines of at most 1000 octets "
    "and the size it reports",
)
def smtp_data(data: bytes) -> None:
    for max_size in (len(data) // 2 + 1, 1 << 20):
        whole = _read_data(iter([data]), max_size)
        assert whole == _read_data(chunked(data), max_size), "chunking changed the result"
        result, rest = whole
        if result is None:
            assert TERMINATOR not in b"\r\n" + data
            continue
        end = (b"\r\n" + data).find(TERMINATOR)
        assert rest == data[end - 2 + len(TERMINATOR) :]
        if result.problem is None:
            body = result.transmission
            assert body == data[:end]
            assert body.count(b"\r") == body.count(b"\n") == body.count(b"\r\n")
            assert max(map(len, body.split(b"\r\n"))) <= 998
            assert result.size == len(body) <= max_size


# -- IMAP -----------------------------------------------------------------------------------


@target(
    "imap_engine",
    max_len=64 * 1024,
    checks="raw client bytes in chunks of varying size: framing, literals ({n} and {n+}, too "
    "big, discarded), IDLE/DONE and AUTHENTICATE modes, every command through the grammar; "
    "no exception at all",
)
def imap_engine(data: bytes) -> None:
    engine = ServerEngine(max_command=8 * 1024, max_message=16 * 1024)
    for chunk in [*chunked(data), b""]:
        engine.receive_data(chunk)
        while True:
            event = engine.next_event()
            if event is IMAP_NEED_DATA or isinstance(event, Closed):
                break
            if isinstance(event, Fatal):
                return
            if isinstance(event, CommandReceived):
                if event.command.name == "IDLE":
                    engine.expect_idle_done()
                elif event.command.name == "AUTHENTICATE":
                    engine.expect_auth_response()


@target(
    "imap_command",
    max_len=8 * 1024,
    errors=(CommandError,),
    checks="one complete command (tag, name, arguments, literals) through parse_command",
)
def imap_command(data: bytes) -> None:
    parse_command(data)


def _candidates() -> list[Candidate]:
    headers = [
        ("From", "Alice <alice@example.org>"),
        ("To", "bob@example.org"),
        ("Subject", "Grüße"),
    ]
    when = datetime(2024, 2, 6, 9, tzinfo=UTC)
    text = MessageText(headers, "hello\r\n", when)
    flags = frozenset({"\\Seen", "$Label"})
    return [
        Candidate(
            seq, uid, flags if seq % 2 else frozenset(), 100 * seq, when, seq, 5, 40, lambda: text
        )  # fmt: skip
        for seq, uid in ((1, 3), (2, 17), (5, 40))
    ]


CANDIDATES = _candidates()


@target(
    "imap_search",
    max_len=4096,
    errors=(ParseError,),
    checks="SEARCH criteria (CHARSET, every key, OR/NOT, parentheses, sequence sets, dates), "
    "then evaluated against three messages",
)
def imap_search(data: bytes) -> None:
    _charset, key = parse_search(Cursor(data))
    needs_content(key)
    uses_modseq(key)
    for candidate in CANDIDATES:
        matches(key, candidate)


@target(
    "imap_fetchspec",
    max_len=2048,
    errors=(ParseError,),
    checks="FETCH attributes; the formatted form of what was parsed parses to the same attributes",
)
def imap_fetchspec(data: bytes) -> None:
    atts = parse_fetch_atts(Cursor(data))
    for att in atts:
        att.response_name()
    again = parse_fetch_atts(Cursor(("(" + " ".join(a.format() for a in atts) + ")").encode()))
    assert again == atts, (atts, again)


@target(
    "proxy_protocol",
    max_len=2200,
    errors=(ProxyError,),
    checks="PROXY v1/v2 headers (relay/proxy_protocol.py); a header found is at most "
    "MAX_HEADER bytes and no shorter prefix of it is taken for one; 'need more' only below "
    "MAX_HEADER bytes",
)
def proxy_protocol_header(data: bytes) -> None:
    header = proxy_protocol.parse(data)
    if header is None:
        assert len(data) < proxy_protocol.MAX_HEADER
        return
    assert header.length <= min(len(data), proxy_protocol.MAX_HEADER)
    for k in (0, 1, 12, 15, 16, header.length // 2, header.length - 1):
        if k < header.length:
            assert proxy_protocol.parse(data[:k]) is None, k


@target(
    "imap_seqset",
    max_len=1024,
    errors=(ParseError,),
    checks="a sequence set; format() parses back to the same set; select() agrees with "
    "contains() for a mailbox of 60 messages",
)
def imap_seqset(data: bytes) -> None:
    seqset = parse_seqset(Cursor(data))
    assert parse_seqset(Cursor(seqset.format().encode())) == seqset
    uids = list(range(1, 120, 2))
    picked = seqset.select(uids, uids[-1])
    assert picked == [i for i, u in enumerate(uids) if seqset.contains(u, uids[-1])]


def _sections(entity: message_parts.Entity, path: tuple[int, ...] = ()) -> Iterator[tuple]:
    yield path
    for i, child in enumerate(entity.children[:8], 1):
        yield from _sections(child, (*path, i))
    if entity.embedded is not None and len(path) < 8:
        yield from _sections(entity.embedded, (*path, 1))


@target(
    "imap_mime",
    max_len=64 * 1024,
    checks="a stored message through the FETCH MIME code: parse, BODYSTRUCTURE (both forms), "
    "ENVELOPE, BODY[section] of every part and text, the SEARCH text; no exception at all",
)
def imap_mime(data: bytes) -> None:
    root = message_parts.parse(data)
    message_parts.bodystructure(root, extended=True)
    message_parts.bodystructure(root, extended=False)
    message_parts.envelope(root)
    message_parts.message_text(data)
    fields = ("From", "Content-Type", "Chat-Version")
    for path in list(_sections(root))[:6]:  # each section_bytes parses the message again
        for text in ("", "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            if text == "MIME" and not path:
                continue
            message_parts.section_bytes(
                data, Section(path, text, fields if "FIELDS" in text else ())
            )
    message_parts.section_bytes(data, Section((9, 9, 9), ""))


# -- policy -----------------------------------------------------------------------------------


def _walk(part: structure.Part, depth: int) -> None:
    assert isinstance(part.content_type, str)
    with contextlib.suppress(structure.MimeError):
        part.decoded_body()
    if part.is_multipart and depth < 3:
        with contextlib.suppress(structure.MimeError):
            for child in structure.children(part)[:20]:
                _walk(child, depth + 1)


@target(
    "policy_mime",
    max_len=64 * 1024,
    errors=(structure.MimeError,),
    checks="the policy's MIME reader: header, parts (three levels), transfer decoding",
)
def policy_mime(data: bytes) -> None:
    _walk(structure.parse(data), 0)


@target(
    "policy_openpgp",
    max_len=16 * 1024,
    errors=(openpgp.NotEncrypted,),
    checks="ASCII armor (with and without armor headers) and the OpenPGP packet walk, on the "
    "input as armor and as binary packets",
)
def policy_openpgp(data: bytes) -> None:
    with contextlib.suppress(openpgp.NotEncrypted):
        openpgp.check_encrypted_packets(data)
    with contextlib.suppress(openpgp.NotEncrypted):
        openpgp.dearmor(data, allow_headers=False)
    openpgp.check_encrypted_packets(openpgp.dearmor(data, allow_headers=True))


@target(
    "policy_checks",
    max_len=64 * 1024,
    checks="check_outgoing and check_incoming on a whole message: always a Decision, a reply "
    "exactly when it is refused; no exception at all",
)
def policy_checks(data: bytes) -> None:
    sender = "alice0001@example.org"
    for check in (checks.check_outgoing, checks.check_incoming):
        decision = check(data, sender, [sender])
        assert isinstance(decision, checks.Decision)
        assert (decision.kind == "rejected") == (decision.reply is not None), decision


# -- web --------------------------------------------------------------------------------------


def _app(**limits: int) -> SimpleNamespace:
    config = Config(
        mail_domain="chat.example.org",
        data_dir=Path(tempfile.gettempdir()) / "relay-fuzz-nonexistent",
        limits=dataclasses.replace(Limits(), **limits),
    )
    log = Logger(stream=io.StringIO())
    store = SimpleNamespace(storage_full=lambda: False)  # what the address rules ask of it
    return SimpleNamespace(config=config, body_budget=ByteBudget(1 << 20), log=log, store=store)


class _Stream(trio.abc.Stream):
    """The client side of one connection: the input in chunks, then EOF; answers collected."""

    def __init__(self, data: bytes) -> None:
        self.chunks = list(chunked(data))
        self.sent = bytearray()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def _echo(request: Request, app: object) -> Response:
    """Stands in for the pages that need a store or draw a QR code: reads what a page reads."""
    return text_response(200, f"{request.path} {sorted(request.query)}\n")


STUB_HANDLERS = {"/", "/new", "/cgi-bin/newemail.py", "/mxdeliv"}


@contextlib.contextmanager
def _stubbed_routes() -> Iterator[None]:
    real = list(routes.ROUTES)
    routes.ROUTES[:] = [
        dataclasses.replace(r, handler=_echo) if r.path in STUB_HANDLERS else r for r in real
    ]
    try:
        yield
    finally:
        routes.ROUTES[:] = real


@target(
    "http",
    max_len=32 * 1024,
    checks="raw bytes into the HTTP server's session (h11, head and body limits, routing, "
    "405/404/413/redirects, keep-alive) as plain HTTP and HTTPS; no exception at all, and "
    "what it sends starts with an HTTP/1.1 status line",
)
def http(data: bytes) -> None:
    app = _app(max_message_size=8 * 1024)
    with _stubbed_routes():
        for service in ("http", "https"):
            stream = _Stream(data)
            trio.run(server.handle, stream, Peer("192.0.2.7", 40000), app, service)
            assert not stream.sent or stream.sent.startswith(b"HTTP/1.1 "), bytes(stream.sent[:80])
            assert app.body_budget.used == 0, "body budget not given back"


async def _stub_accept(
    app: object, sender: str, recipients: list[str], content: bytes
) -> SimpleNamespace:
    decision = checks.check_incoming(content, sender, recipients)
    return SimpleNamespace(reply=decision.reply or mxdeliv.ACCEPTED)


@target(
    "mxdeliv",
    max_len=32 * 1024,
    checks="POST /mxdeliv as the route sees it (input: header lines, CRLF CRLF, body): "
    "X-Mail-From/X-Mail-To parsing, address rules, DATA framing, the PGP gate; the answer is "
    "a known status with an SMTP reply line as its body",
)
def mxdeliv_target(data: bytes) -> None:
    head, _, body = data.partition(b"\r\n\r\n")
    headers = []
    for line in head.split(b"\r\n"):
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    real, mxdeliv.accept_incoming = mxdeliv.accept_incoming, _stub_accept
    try:
        coro = mxdeliv.mxdeliv(_app(max_message_size=16 * 1024), headers, body)
        try:
            coro.send(None)
        except StopIteration as done:
            response = done.value
        else:
            coro.close()
            raise AssertionError("mxdeliv waited for something that never comes")
    finally:
        mxdeliv.accept_incoming = real
    assert response.status in (200, 400, 403, 413, 500), response
    assert response.body[:3].isdigit() and response.body[3:4] == b" ", response.body


# -- configuration ----------------------------------------------------------------------------

_CONFIG_DIR = Path(tempfile.mkdtemp(prefix="relay-fuzz-config-"))


@target(
    "config",
    max_len=8 * 1024,
    errors=(ConfigError,),
    checks="a relay.toml through relay.config.load (file read, TOML, every key's checks); a "
    "config that loads writes back (to_toml) to one that loads to the same config",
)
def config(data: bytes) -> None:
    path = _CONFIG_DIR / "relay.toml"
    path.write_bytes(data)
    loaded = relay_config.load(path)
    path.write_text(relay_config.to_toml(loaded), encoding="utf-8")
    try:
        again = relay_config.load(path)
    except ConfigError as e:
        raise AssertionError(f"to_toml wrote a config that does not load: {e}") from None
    assert again == loaded


def load_setup_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("chatmail_setup", str(SETUP_SCRIPT))
    spec = importlib.util.spec_from_loader("chatmail_setup", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


_setup = None


@target(
    "boot_settings",
    max_len=4096,
    checks="chatmail-settings.txt from the boot partition (read as chatmail-setup reads it); "
    "every accepted value passes its own check again, and the values that go into relay.toml "
    "(privacy_mail, mail_domain) survive `relay config set` (parse_value, edit_text) and a TOML "
    "parser unchanged",
)
def boot_settings(data: bytes) -> None:
    global _setup
    if _setup is None:
        _setup = load_setup_script()
    settings, problems = _setup.parse_settings(data.decode("utf-8", errors="replace"))
    assert all(isinstance(p, str) for p in problems)
    for key, value in settings.items():
        assert key in _setup.KNOWN_KEYS
        assert _setup.check_setting(key, value) == value, (key, value)
        if key in ("privacy_mail", "mail_domain"):
            # As relay-config hands it to `relay config set`: parsed, then edited into the file.
            dotted = "privacy.privacy_mail" if key == "privacy_mail" else "mail_domain"
            given = config_edit.parse_value(dotted, _setup.string_value(value))
            text = config_edit.edit_text(_SETUP_TOML, {dotted: given})
            try:
                parsed = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise AssertionError(f"{key}={value!r} makes relay.toml unreadable: {e}") from None
            if key == "privacy_mail":
                parsed = parsed["privacy"]
            assert parsed[key] == value, (key, value, parsed[key])


_SETUP_TOML = 'mail_domain = "192.168.1.20"\ndata_dir = "."\n\n[privacy]\nno_log = false\n'
