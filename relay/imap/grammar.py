"""Token-level reader for one complete IMAP command (RFC 3501 §9 grammar).

The framer hands over the whole command as raw bytes, literals included, so the reader can
walk it front to back. It is lenient where real clients are sloppy (extra spaces inside
parenthesised lists, bare LF line ends) and strict everywhere else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

# RFC 3501 atom-specials: ( ) { SP CTL % * " \ ]  (CTL = 0x00-0x1f, 0x7f).
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x20)) | {0x7F}
ATOM_CHARS = frozenset(range(0x21, 0x7F)) - _ATOM_SPECIALS
# ASTRING-CHAR adds "]" back; list-mailbox also allows the wildcards % and *.
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
LIST_CHARS = ASTRING_CHARS | {ord("%"), ord("*")}

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class ParseError(Exception):
    """The command does not follow the grammar; the text goes into the tagged BAD."""


class Cursor:
    """Reads tokens from one command's bytes; `pos` only moves forward."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    # -- primitives -------------------------------------------------------------------------

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def at_end(self) -> bool:
        """True at the end of the command line (CRLF, bare LF, or the end of the buffer)."""
        rest = self.data[self.pos : self.pos + 2]
        return rest in (b"", b"\r\n", b"\n")

    def end(self) -> None:
        if not self.at_end():
            raise ParseError("Unexpected data at end of command")

    def expect(self, token: bytes) -> None:
        if self.data[self.pos : self.pos + len(token)].upper() != token.upper():
            raise ParseError(f"Expected {token.decode()!r}")
        self.pos += len(token)

    def accept(self, token: bytes) -> bool:
        if self.data[self.pos : self.pos + len(token)].upper() == token.upper():
            self.pos += len(token)
            return True
        return False

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise ParseError("Expected space")
        self.pos += 1

    def skip_spaces(self) -> None:
        while self.peek() == 0x20:
            self.pos += 1

    def take_while(self, allowed: frozenset[int]) -> bytes:
        start = self.pos
        data = self.data
        while self.pos < len(data) and data[self.pos] in allowed:
            self.pos += 1
        return data[start : self.pos]

    # -- atoms, numbers, strings ---------------------------------------------------------------

    def atom(self) -> str:
        raw = self.take_while(ATOM_CHARS)
        if not raw:
            raise ParseError("Expected atom")
        return raw.decode("ascii")

    def number(self) -> int:
        raw = self.take_while(frozenset(b"0123456789"))
        if not raw or len(raw) > 20:
            raise ParseError("Expected number")
        return int(raw)

    def nz_number(self) -> int:
        value = self.number()
        if value == 0:
            raise ParseError("Expected non-zero number")
        return value

    def quoted(self) -> bytes:
        self.expect(b'"')
        out = bytearray()
        data = self.data
        while True:
            if self.pos >= len(data):
                raise ParseError("Unterminated quoted string")
            c = data[self.pos]
            self.pos += 1
            if c == 0x22:
                return bytes(out)
            if c in (0x0D, 0x0A):
                raise ParseError("Line break inside quoted string")
            if c == 0x5C:
                if self.pos >= len(data) or data[self.pos] not in b'"\\':
                    raise ParseError("Bad escape in quoted string")
                c = data[self.pos]
                self.pos += 1
            out.append(c)

    def literal(self) -> bytes:
        """{n}CRLF<n bytes> or the LITERAL+ form {n+}; the framer already collected the bytes."""
        self.expect(b"{")
        size = self.number()
        self.accept(b"+")
        self.expect(b"}")
        if not (self.accept(b"\r\n") or self.accept(b"\n")):
            raise ParseError("Expected line end after literal size")
        if self.pos + size > len(self.data):
            raise ParseError("Literal is shorter than announced")
        value = self.data[self.pos : self.pos + size]
        self.pos += size
        return value

    def string(self) -> bytes:
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c == 0x7B:
            return self.literal()
        raise ParseError("Expected string")

    def astring(self) -> bytes:
        c = self.peek()
        if c in (0x22, 0x7B):
            return self.string()
        raw = self.take_while(ASTRING_CHARS)
        if not raw:
            raise ParseError("Expected atom or string")
        return raw

    def astring_text(self) -> str:
        return _decode(self.astring())

    def nstring(self) -> bytes | None:
        if self.accept_nil():
            return None
        return self.string()

    def accept_nil(self) -> bool:
        if self.data[self.pos : self.pos + 3].upper() == b"NIL":
            after = self.data[self.pos + 3 : self.pos + 4]
            if not after or after[0] not in ATOM_CHARS:
                self.pos += 3
                return True
        return False

    def mailbox(self) -> str:
        """A mailbox name; INBOX in any case is the one INBOX (RFC 3501 §5.1)."""
        name = self.astring_text()
        return "INBOX" if name.upper() == "INBOX" else name

    def list_mailbox(self) -> str:
        c = self.peek()
        if c in (0x22, 0x7B):
            return _decode(self.string())
        raw = self.take_while(LIST_CHARS)
        if not raw:
            raise ParseError("Expected mailbox pattern")
        return _decode(raw)

    # -- lists --------------------------------------------------------------------------------

    def open_list(self) -> None:
        self.expect(b"(")
        self.skip_spaces()

    def close_list(self) -> bool:
        """After an item: True if the list ended, False if another item follows."""
        had_space = self.peek() == 0x20
        self.skip_spaces()
        if self.accept(b")"):
            return True
        if not had_space:
            raise ParseError("Expected space or ')'")
        return False

    def empty_list_end(self) -> bool:
        """Right after '(': consume ')' of an empty list."""
        return self.accept(b")")

    def flag(self) -> str:
        if self.accept(b"\\"):
            if self.accept(b"*"):
                return "\\*"
            return "\\" + self.atom()
        return self.atom()

    def flag_list(self) -> list[str]:
        self.open_list()
        flags: list[str] = []
        if self.empty_list_end():
            return flags
        while True:
            flags.append(self.flag())
            if self.close_list():
                return flags

    def date(self) -> datetime:
        """date = date-text / DQUOTE date-text DQUOTE; date-text = d[d]-Mon-yyyy."""
        quoted = self.accept(b'"')
        raw = self.take_while(
            frozenset(b"0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        )
        if quoted:
            self.expect(b'"')
        return parse_date(raw.decode("ascii"))

    def date_time(self) -> datetime:
        """date-time = DQUOTE dd-Mon-yyyy SP hh:mm:ss SP zone DQUOTE."""
        raw = self.quoted().decode("ascii", "replace")
        return parse_date_time(raw)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def parse_date(text: str) -> datetime:
    try:
        day, mon, year = text.split("-")
        month = [m.lower() for m in MONTHS].index(mon.lower()) + 1
        return datetime(int(year), month, int(day), tzinfo=UTC)
    except (ValueError, IndexError, OverflowError):  # OverflowError: a year of 20 digits
        raise ParseError("Bad date") from None


def parse_date_time(text: str) -> datetime:
    try:
        date_part, time_part, zone = text.strip().split(" ")
        day = parse_date(date_part)
        hh, mm, ss = (int(x) for x in time_part.split(":"))
        if len(zone) != 5 or zone[0] not in "+-":
            raise ValueError
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        if zone[0] == "-":
            offset = -offset
        local = day.replace(hour=hh, minute=mm, second=ss, tzinfo=timezone(offset))
        return local.astimezone(UTC)
    except (ValueError, OverflowError, ParseError):
        raise ParseError("Bad date-time") from None
