"""A sans-IO SMTP server engine (RFC 5321 with the extensions a chatmail relay needs).

Bytes go in with `receive_data()`; `next_event()` returns the next event or NEED_DATA; replies
collect in a buffer that the session drains with `data_to_send()`. The engine answers protocol
matters itself (greeting, EHLO, ordering, syntax, DATA framing) and leaves policy to the session:
an event that needs a decision pauses the engine until `accept()` or `reject()` is called.
Pipelined commands are handled one after the other from the buffer, so replies stay in order.
Memory is bounded: command lines are capped, and DATA beyond the size limit is counted, not kept.

Every 2xx, 4xx and 5xx reply carries an RFC 3463 enhanced status code right after the reply code
(`_reply()` refuses one without); RFC 2034 exempts only the greeting, the replies to EHLO and
HELO, and 3xx. The lines are the same after HELO as after EHLO (where ENHANCEDSTATUSCODES is
advertised): Postfix, in front of the official relay, sends its codes either way, and a client
that did not ask for them reads them as text. See relay.reply for where the texts come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from relay.reply import ENHANCED_CODE
from relay.smtp.dataframe import DataReader
from relay.smtp.events import (
    NEED_DATA,
    AuthAttempt,
    Closed,
    Event,
    MailFrom,
    MessageData,
    RcptTo,
    StartTLS,
    _NeedData,
)
from relay.smtp.sasl import Challenge, Failure, SaslExchange, Step
from relay.smtp.syntax import SyntaxProblem, mail_param_problem, parse_path_and_params

MAX_COMMAND_LINE = 2048  # RFC says 512; AUTH PLAIN responses and long addresses need more
MAX_ERRORS = 20  # protocol errors before we hang up, like Postfix's smtpd_hard_error_limit
MAX_JUNK = 100  # NOOP/RSET/VRFY per connection, like Postfix's smtpd_junk_command_limit
JUNK_COMMANDS = frozenset({"NOOP", "RSET", "VRFY"})


class State(Enum):
    COMMAND = auto()
    AUTH = auto()  # a SASL exchange waits for the client's next response line
    DATA = auto()
    DECIDING = auto()  # an event waits for accept()/reject()
    TLS_HANDSHAKE = auto()  # 220 sent for STARTTLS; no bytes until tls_started()
    CLOSED = auto()


@dataclass(frozen=True)
class LineProblem:
    """A command line that cannot be read; `text` is the 500 reply."""

    text: str


DEFAULT_ACCEPT = {
    AuthAttempt: (235, "2.7.0 Authentication successful"),
    MailFrom: (250, "2.1.0 Ok"),
    RcptTo: (250, "2.1.5 Ok"),
    MessageData: (250, "2.0.0 Ok"),
}


class SMTPEngine:
    def __init__(
        self,
        hostname: str,
        *,
        max_message_size: int,
        max_recipients: int = 1000,
        tls_active: bool = False,
        starttls: bool = True,
        offer_auth: bool = True,
        auth_requires_tls: bool = True,
        require_auth: bool = True,
        require_tls: bool = False,
    ):
        self.hostname = hostname
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        self.tls_active = tls_active
        self.starttls = starttls
        self.offer_auth = offer_auth
        self.auth_requires_tls = auth_requires_tls
        self.require_auth = require_auth
        # No mail transaction in clear text (MX: Postfix's "encrypt").
        self.require_tls = require_tls
        self.state = State.COMMAND
        self.authenticated: str | None = None  # the username once AUTH succeeded
        self.helo: str | None = None
        self.errors = 0
        self.junk = 0  # commands that only keep a connection alive
        self._in = bytearray()
        self._out = bytearray()
        self._eof = False
        self._discarding_line = False
        self._closed_reason = ""
        self._pending: Event | None = None
        self._sasl: SaslExchange | None = None
        self._data: DataReader | None = None
        self.mail_from: str | None = None  # set while a transaction is open
        self.recipients: list[str] = []
        self._reply(220, f"{hostname} ESMTP", exempt=True)

    # ---- I/O side -------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the peer; b"" means the peer closed its side."""
        if self.state is State.TLS_HANDSHAKE:
            raise RuntimeError("no cleartext bytes may be fed during the TLS handshake")
        if not data:
            self._eof = True
        elif self.state is not State.CLOSED:
            self._in += data

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: start over as RFC 3207 demands."""
        if self.state is not State.TLS_HANDSHAKE:
            raise RuntimeError("tls_started() without STARTTLS")
        self.tls_active = True
        self.helo = None
        self.authenticated = None
        self._reset_transaction()
        self.state = State.COMMAND

    def shutdown(self, text: str, code: int = 421) -> None:
        """Say goodbye on our own initiative (timeouts, overload); the next event is Closed."""
        if self.state is not State.CLOSED:
            self._reply(code, text)
            self._close("shutdown")

    # ---- decisions ------------------------------------------------------------------------

    def accept(self, text: str | None = None) -> None:
        event = self._take_pending()
        code, default = DEFAULT_ACCEPT[type(event)]
        self._reply(code, text or default)
        if isinstance(event, AuthAttempt):
            self.authenticated = event.username
        elif isinstance(event, MailFrom):
            self.mail_from = event.address
        elif isinstance(event, RcptTo):
            self.recipients.append(event.address)
        elif isinstance(event, MessageData):
            self._reset_transaction()

    def reject(self, code: int, text: str) -> None:
        if not 400 <= code < 600:
            raise ValueError(f"not a rejection code: {code}")
        event = self._take_pending()
        self._reply(code, text)
        if isinstance(event, MessageData):
            self._reset_transaction()

    def _take_pending(self) -> Event:
        if self.state is not State.DECIDING or self._pending is None:
            raise RuntimeError("no event is waiting for a decision")
        event, self._pending = self._pending, None
        self.state = State.COMMAND
        return event

    # ---- events ---------------------------------------------------------------------------

    def next_event(self) -> Event | _NeedData:
        if self.state is State.DECIDING:
            raise RuntimeError("accept() or reject() the pending event first")
        while True:
            if self.state is State.CLOSED:
                return Closed(self._closed_reason)
            if self.state is State.TLS_HANDSHAKE:
                return NEED_DATA
            if self.state is State.DATA:
                event = self._next_data_event()
            else:
                line = self._next_line()
                if line is None:
                    if self._eof:
                        self._close("eof")
                        continue
                    return NEED_DATA
                event = self._handle_line(line)
            if event is NEED_DATA:
                if self._eof:
                    self._close("eof")
                    continue
                return NEED_DATA
            if event is not None:
                if isinstance(event, (AuthAttempt, MailFrom, RcptTo, MessageData)):
                    self._pending = event
                    self.state = State.DECIDING
                return event

    def _next_line(self) -> str | LineProblem | None:
        end = self._in.find(b"\n")
        if end < 0:
            if len(self._in) > MAX_COMMAND_LINE:
                self._in.clear()
                self._discarding_line = True
            return None
        raw = bytes(self._in[:end])
        del self._in[: end + 1]
        if self._discarding_line or len(raw) > MAX_COMMAND_LINE:
            self._discarding_line = False
            return LineProblem("5.5.2 Error: line too long")
        try:
            return raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            return LineProblem("5.5.2 Error: bad UTF-8 syntax")

    def _next_data_event(self) -> Event | _NeedData | None:
        assert self._data is not None
        chunk = bytes(self._in)
        self._in.clear()
        rest = self._data.feed(chunk)
        if rest is None:
            return NEED_DATA
        self._in[:0] = rest
        result = self._data.result
        assert result is not None
        self._data = None
        self.state = State.COMMAND
        if result.problem == "too-big":
            # Postfix's words: its message_size_limit (the official relay's max_message_size, as
            # for filtermail behind it) ends an oversized DATA before the filter answers.
            self._reply(552, "5.3.4 Error: message file too big")
        elif result.problem is not None:
            self._reply(500, "5.5.2 Invalid DATA")  # filtermail's text; 5.5.2 as Postfix's bare LF
        else:
            return MessageData(self.mail_from or "", tuple(self.recipients), result.transmission)
        self._reset_transaction()
        return None

    # ---- commands -------------------------------------------------------------------------

    def _handle_line(self, line: str | LineProblem) -> Event | None:
        if isinstance(line, LineProblem):
            return self._error(500, line.text)
        if self.state is State.AUTH:
            assert self._sasl is not None
            return self._sasl_result(self._sasl.step(line))
        verb, _, arg = line.partition(" ")
        handler = _COMMANDS.get(verb.upper())
        if handler is None:
            return self._error(500, "5.5.2 Error: command not recognized")
        if verb.upper() in JUNK_COMMANDS:
            self.junk += 1
            if self.junk > MAX_JUNK:
                self._reply(421, f"4.7.0 {self.hostname} Error: too many junk commands")
                self._close("junk")
                return None
        return handler(self, arg.strip())

    def _hello(self, name: str, *, extended: bool) -> None:
        if not name:
            self._error(501, f"5.5.4 Syntax: {'EHLO' if extended else 'HELO'} hostname")
            return
        self.helo = name
        self._reset_transaction()
        if not extended:
            self._reply(250, self.hostname, exempt=True)
            return
        lines = [self.hostname, "PIPELINING", f"SIZE {self.max_message_size}"]
        if self.starttls and not self.tls_active:
            lines.append("STARTTLS")
        if self._auth_available() and not self.authenticated:
            lines.append("AUTH PLAIN LOGIN")
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8"]
        self._reply(250, "\n".join(lines), exempt=True)

    def _auth_available(self) -> bool:
        return self.offer_auth and (self.tls_active or not self.auth_requires_tls)

    def _starttls(self, arg: str) -> Event | None:
        if arg:
            return self._error(501, "5.5.4 Syntax: STARTTLS")
        if self.tls_active:
            return self._error(554, "5.5.1 Error: TLS already active")
        if not self.starttls:
            return self._error(502, "5.5.1 Error: command not implemented")
        self._reply(220, "2.0.0 Ready to start TLS")
        # Anything pipelined after STARTTLS was sent in clear text and must not be trusted as
        # if it came through TLS (CVE-2011-0411 style command injection).
        self._in.clear()
        self.state = State.TLS_HANDSHAKE
        return StartTLS()

    def _auth(self, arg: str) -> Event | None:
        if not self.offer_auth:
            return self._error(503, "5.5.1 Error: authentication not enabled")
        if not self._auth_available():
            return self._error(530, "5.7.0 Must issue a STARTTLS command first")
        if self.helo is None:
            return self._error(503, "5.5.1 Error: send HELO/EHLO first")
        if self.authenticated:
            return self._error(503, "5.5.1 Error: already authenticated")
        if self.mail_from is not None:
            return self._error(503, "5.5.1 Error: MAIL transaction in progress")
        mechanism, _, initial = arg.partition(" ")
        self._sasl = SaslExchange(mechanism.upper(), initial.strip())
        return self._sasl_result(self._sasl.start())

    def _sasl_result(self, step: Step) -> Event | None:
        if isinstance(step, Challenge):
            self.state = State.AUTH
            self._reply(334, step.text)
            return None
        self.state = State.COMMAND
        exchange, self._sasl = self._sasl, None
        if isinstance(step, Failure):
            return self._error(step.code, step.text)
        assert exchange is not None
        return AuthAttempt(exchange.mechanism, step.username, step.password)

    def _mail(self, arg: str) -> Event | None:
        if self.helo is None:
            return self._error(503, "5.5.1 Error: send HELO/EHLO first")
        if self.require_tls and not self.tls_active:
            return self._error(530, "5.7.0 Must issue a STARTTLS command first")
        if self.require_auth and not self.authenticated:
            return self._error(530, "5.7.0 Authentication required")
        if self.mail_from is not None:
            return self._error(503, "5.5.1 Error: nested MAIL command")
        try:
            address, params = parse_path_and_params(arg, "FROM")
        except SyntaxProblem as e:
            return self._error(e.code, e.text)
        problem = mail_param_problem(params, self.max_message_size)
        if problem is not None:
            code, text = problem
            if code == 552:  # a size announcement over the limit is a refusal, not an error
                self._reply(code, text)
                return None
            return self._error(code, text)
        return MailFrom(address, params)

    def _rcpt(self, arg: str) -> Event | None:
        if self.mail_from is None:
            return self._error(503, "5.5.1 Error: need MAIL command")
        if len(self.recipients) >= self.max_recipients:
            self._reply(452, "4.5.3 Error: too many recipients")
            return None
        try:
            address, params = parse_path_and_params(arg, "TO")
        except SyntaxProblem as e:
            return self._error(e.code, e.text)
        if params:
            return self._error(555, f"5.5.4 Unsupported option: {next(iter(params))}")
        if not address:
            return self._error(501, "5.1.3 Bad recipient address syntax")
        return RcptTo(address, params)

    def _data_cmd(self, arg: str) -> None:
        if arg:
            self._error(501, "5.5.4 Syntax: DATA")
        elif self.mail_from is None:
            self._error(503, "5.5.1 Error: need MAIL command")
        elif not self.recipients:
            self._error(554, "5.5.1 Error: no valid recipients")
        else:
            self._reply(354, "End data with <CR><LF>.<CR><LF>")
            self._data = DataReader(self.max_message_size)
            self.state = State.DATA

    def _rset(self, arg: str) -> None:
        self._reset_transaction()
        self._reply(250, "2.0.0 Ok")

    def _noop(self, arg: str) -> None:
        self._reply(250, "2.0.0 Ok")

    def _vrfy(self, arg: str) -> None:
        # Never tell whether an address exists (no user enumeration).
        if not arg:
            self._error(501, "5.5.4 Syntax: VRFY address")
        else:
            self._reply(252, f"2.0.0 {arg[:256]}")

    def _expn(self, arg: str) -> None:
        self._error(502, "5.5.1 Error: command not implemented")

    def _help(self, arg: str) -> None:
        self._reply(214, "2.0.0 See RFC 5321")

    def _quit(self, arg: str) -> None:
        self._reply(221, "2.0.0 Bye")
        self._close("quit")

    # ---- helpers --------------------------------------------------------------------------

    def _error(self, code: int, text: str) -> Event | None:
        """Answer a protocol error; the session gets no event from it (None), so a command
        handler can end with `return self._error(...)`."""
        self._reply(code, text)
        self.errors += 1
        if self.errors >= MAX_ERRORS and self.state is not State.CLOSED:
            self._reply(421, f"4.7.0 {self.hostname} Error: too many errors")
            self._close("errors")
        return None

    def _reply(self, code: int, text: str, *, exempt: bool = False) -> None:
        """Queue a reply; `text` may hold several lines. Only the greeting and the replies to
        EHLO/HELO are `exempt` from the enhanced status code on every 2xx/4xx/5xx line."""
        lines = text.split("\n")
        if not exempt and code // 100 in (2, 4, 5):
            for line in lines:
                if not _has_enhanced_code(code, line):
                    raise ValueError(f"reply {code} {line!r} lacks an enhanced status code")
        for line in lines[:-1]:
            self._reply_line(f"{code}-{line}")
        self._reply_line(f"{code} {lines[-1]}")

    def _reply_line(self, line: str) -> None:
        self._out += line.encode() + b"\r\n"

    def _reset_transaction(self) -> None:
        self.mail_from = None
        self.recipients = []

    def _close(self, reason: str) -> None:
        self.state = State.CLOSED
        self._closed_reason = reason
        self._in.clear()
        self._data = None


def _has_enhanced_code(code: int, line: str) -> bool:
    """`line` starts with a status of `code`'s class, ended by a space, ":" or the line end."""
    match = ENHANCED_CODE.match(line)
    return (
        match is not None
        and line[0] == str(code)[0]
        and line[match.end() : match.end() + 1] in ("", " ", ":")
    )


_COMMANDS = {
    "EHLO": lambda engine, arg: engine._hello(arg, extended=True),
    "HELO": lambda engine, arg: engine._hello(arg, extended=False),
    "STARTTLS": SMTPEngine._starttls,
    "AUTH": SMTPEngine._auth,
    "MAIL": SMTPEngine._mail,
    "RCPT": SMTPEngine._rcpt,
    "DATA": SMTPEngine._data_cmd,
    "RSET": SMTPEngine._rset,
    "NOOP": SMTPEngine._noop,
    "VRFY": SMTPEngine._vrfy,
    "EXPN": SMTPEngine._expn,
    "HELP": SMTPEngine._help,
    "QUIT": SMTPEngine._quit,
}
