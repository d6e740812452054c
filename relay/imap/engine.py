"""Sans-IO IMAP server engine: bytes in, events out (in the style of h11).

It frames client input into complete commands (following {n} and {n+} literals), parses them,
and tracks the two non-command input modes: the DONE that ends IDLE and the client's lines
during AUTHENTICATE. Every buffer is bounded: a command's text, small literals and, for
APPEND only, a message literal up to the configured maximum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .commands import Command, CommandError, parse_command, read_tag

DEFAULT_MAX_COMMAND = 64 * 1024
_LITERAL_AT_END = re.compile(rb"\{(\d{1,12})(\+?)\}\r?\n\Z")
_APPEND_START = re.compile(rb"[^ ]+ APPEND ", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CommandReceived:
    command: Command


@dataclass(frozen=True, slots=True)
class BadCommand:
    tag: str | None  # None: answer untagged ("* BAD ...")
    message: str


@dataclass(frozen=True, slots=True)
class ContinueLiteral:
    """A synchronizing literal is acceptable: send a continuation request ("+ ...")."""


@dataclass(frozen=True, slots=True)
class LiteralTooBig:
    tag: str | None


@dataclass(frozen=True, slots=True)
class IdleDone:
    ok: bool  # False: the client sent something other than DONE


@dataclass(frozen=True, slots=True)
class AuthResponse:
    data: bytes  # one client line during AUTHENTICATE, without its line end


@dataclass(frozen=True, slots=True)
class Fatal:
    """Input the engine cannot recover from; send BYE with this text and close."""

    message: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The client closed its side and every complete command has been handed out."""


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
Event = (
    CommandReceived | BadCommand | ContinueLiteral | LiteralTooBig | IdleDone | AuthResponse | Fatal
)


class ServerEngine:
    def __init__(self, *, max_command: int = DEFAULT_MAX_COMMAND, max_message: int = 0) -> None:
        self.max_command = max_command  # all text of one command, small literals included
        self.max_message = max_message  # APPEND literal limit; 0 until the client is logged in
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already known to hold no line end
        self._cmd = bytearray()
        self._text_len = 0
        self._append = False  # the command being collected is an APPEND (from its first line)
        self._literal_left = 0
        self._discard_left = 0
        self._discard_tag: str | None = None
        self._discarding = False
        self._mode = "command"
        self._eof = False
        self._dead = False  # after Fatal nothing more is read

    # -- input ------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the client; b"" means the client closed its side."""
        if data:
            self._buf += data
        else:
            self._eof = True

    def expect_idle_done(self) -> None:
        self._mode = "idle"

    def expect_auth_response(self) -> None:
        self._mode = "auth"

    def take_buffered(self) -> bytes:
        """Remove and return unread input (at a STARTTLS or COMPRESS switch)."""
        data, self._buf, self._scanned = bytes(self._buf), bytearray(), 0
        return data

    @property
    def in_literal(self) -> bool:
        """Literal bytes are awaited (kept or discarded): bulk data, not a command line."""
        return bool(self._literal_left or self._discard_left)

    # -- output -----------------------------------------------------------------------------

    def next_event(self) -> Event | Closed | _NeedData:
        if self._dead:
            return Closed()
        while True:
            if self._discard_left:
                self._discard_left -= self._consume(self._discard_left, keep=False)
                if self._discard_left:
                    return self._need()
                continue
            if self._literal_left:
                self._literal_left -= self._consume(self._literal_left, keep=True)
                if self._literal_left:
                    return self._need()
                continue
            line = self._take_line()
            if line is None:
                if len(self._buf) + self._text_len > self.max_command:
                    return self._fatal("Command line too long")
                return self._need()
            event = self._on_line(line)
            if event is not None:
                return event

    def _fatal(self, message: str) -> Fatal:
        self._dead = True
        self._buf = bytearray()
        self._reset()
        return Fatal(message)

    def _need(self) -> Closed | _NeedData:
        return Closed() if self._eof else NEED_DATA

    def _consume(self, wanted: int, *, keep: bool) -> int:
        n = min(wanted, len(self._buf))
        if keep:
            self._cmd += self._buf[:n]
        del self._buf[:n]
        self._scanned = 0
        return n

    def _take_line(self) -> bytes | None:
        idx = self._buf.find(b"\n", self._scanned)
        if idx < 0:
            self._scanned = len(self._buf)
            return None
        line = bytes(self._buf[: idx + 1])
        del self._buf[: idx + 1]
        self._scanned = 0
        return line

    def _on_line(self, line: bytes) -> Event | None:
        if self._mode == "idle":
            self._mode = "command"
            return IdleDone(line.strip().upper() == b"DONE")
        if self._mode == "auth":
            self._mode = "command"
            return AuthResponse(line.rstrip(b"\r\n"))
        if self._discarding:
            return self._skip_line(line)
        if not self._cmd and not line.strip():
            return None  # stray empty line between commands: ignore, as most servers do
        self._text_len += len(line)
        if self._text_len > self.max_command:
            return self._fatal("Command line too long")
        if not self._cmd:
            # Decided once per command: matching the whole command at every literal was
            # quadratic in the number of literals.
            self._append = _APPEND_START.match(line) is not None
        self._cmd += line
        match = _LITERAL_AT_END.search(line)
        if match is None:
            return self._finish()
        size, synchronizing = int(match[1]), not match[2]
        if size > self._literal_limit():
            return self._refuse(size, synchronizing)
        self._literal_left = size
        if not self._is_append():
            self._text_len += size  # small literals count against the command limit
        return ContinueLiteral() if synchronizing else None

    def _literal_limit(self) -> int:
        if self._is_append() and self.max_message:
            return self.max_message
        return self.max_command - self._text_len

    def _is_append(self) -> bool:
        return self._append

    def _refuse(self, size: int, synchronizing: bool) -> Event | None:
        tag = read_tag(bytes(self._cmd[:200]))
        self._reset()
        if synchronizing:
            return LiteralTooBig(tag)  # the client waits for "+", so nothing more arrives
        # Non-synchronizing: the bytes are on their way; drop them and the rest of the command.
        self._discard_left = size
        self._discard_tag = tag
        self._discarding = True
        return None

    def _skip_line(self, line: bytes) -> Event | None:
        match = _LITERAL_AT_END.search(line)
        if match is not None and match[2]:
            self._discard_left = int(match[1])
            return None
        self._discarding = False
        return LiteralTooBig(self._discard_tag)

    def _finish(self) -> Event:
        raw = bytes(self._cmd)
        self._reset()
        try:
            return CommandReceived(parse_command(raw))
        except CommandError as exc:
            return BadCommand(exc.tag, exc.message)

    def _reset(self) -> None:
        self._cmd = bytearray()
        self._text_len = 0
        self._append = False
