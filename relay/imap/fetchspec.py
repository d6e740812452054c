"""FETCH attribute lists: macros, BODY[section]<partial>, BODY.PEEK, and their response names."""

from __future__ import annotations

from dataclasses import dataclass

from .grammar import ATOM_CHARS, Cursor, ParseError

SIMPLE_ATTS = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
    }
)
MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
SECTION_TEXTS = ("HEADER.FIELDS.NOT", "HEADER.FIELDS", "HEADER", "TEXT", "MIME")
# Header field names: printable ASCII except ":" (RFC 5322 ftext); written as atoms when they
# have no IMAP specials, else as quoted strings.
_FTEXT = frozenset(range(0x21, 0x7F)) - {ord(":")}
_FIELD_CHARS = _FTEXT - frozenset(b'()"{\\]')


@dataclass(frozen=True, slots=True)
class Section:
    part: tuple[int, ...] = ()  # "1.2" -> (1, 2); () = the whole message
    text: str = ""  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[str, ...] = ()  # names for HEADER.FIELDS[.NOT], as the client wrote them

    def format(self) -> str:
        items = [str(p) for p in self.part]
        if self.text:
            items.append(self.text)
        spec = ".".join(items)
        if self.fields:
            spec += " (" + " ".join(map(_field_name, self.fields)) + ")"
        return spec


def _field_name(name: str) -> str:
    if frozenset(name.encode()) <= _FIELD_CHARS:
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class FetchAtt:
    name: str  # ENVELOPE, FLAGS, ..., or BODY with a section
    section: Section | None = None
    partial: tuple[int, int] | None = None  # (start, length)
    peek: bool = False

    def response_name(self) -> str:
        """The name the server echoes: BODY.PEEK[x]<5.10> is answered as BODY[x]<5>."""
        if self.section is None:
            return self.name
        name = f"BODY[{self.section.format()}]"
        if self.partial is not None:
            name += f"<{self.partial[0]}>"
        return name

    def format(self) -> str:
        if self.section is None:
            return self.name
        name = ("BODY.PEEK" if self.peek else "BODY") + f"[{self.section.format()}]"
        if self.partial is not None:
            name += f"<{self.partial[0]}.{self.partial[1]}>"
        return name

    @property
    def sets_seen(self) -> bool:
        """Fetching body text without PEEK sets \\Seen (RFC 3501 §6.4.5)."""
        if self.section is not None:
            return not self.peek
        return self.name in ("RFC822", "RFC822.TEXT")


def parse_fetch_atts(cur: Cursor) -> tuple[FetchAtt, ...]:
    if cur.peek() == ord("("):
        cur.open_list()
        atts: list[FetchAtt] = []
        while True:
            atts.append(_fetch_att(cur))
            if cur.close_list():
                return tuple(atts)
    word = _word(cur)
    if word in MACROS:
        return tuple(FetchAtt(n) for n in MACROS[word])
    return (_fetch_att(cur, word),)


def _word(cur: Cursor) -> str:
    raw = cur.take_while(ATOM_CHARS - {ord("["), ord("<")})
    if not raw:
        raise ParseError("Expected fetch attribute")
    return raw.decode("ascii").upper()


def _fetch_att(cur: Cursor, word: str | None = None) -> FetchAtt:
    word = word or _word(cur)
    if word in ("BODY", "BODY.PEEK") and cur.peek() == ord("["):
        section = _section(cur)
        partial = _partial(cur) if cur.peek() == ord("<") else None
        return FetchAtt("BODY", section, partial, peek=word == "BODY.PEEK")
    if word in SIMPLE_ATTS:
        return FetchAtt(word)
    raise ParseError(f"Unknown fetch attribute {word}")


def _section(cur: Cursor) -> Section:
    cur.expect(b"[")
    part: list[int] = []
    text = ""
    fields: tuple[str, ...] = ()
    while (byte := cur.peek()) is not None and chr(byte).isdigit():
        part.append(cur.nz_number())
        if not cur.accept(b"."):
            break
    else:
        text = _section_text(cur, allow_mime=bool(part))
    if text.startswith("HEADER.FIELDS"):
        cur.sp()
        fields = _header_list(cur)
    cur.expect(b"]")
    return Section(tuple(part), text, fields)


def _section_text(cur: Cursor, *, allow_mime: bool) -> str:
    for candidate in SECTION_TEXTS:
        if cur.accept(candidate.encode()):
            if candidate == "MIME" and not allow_mime:
                raise ParseError("MIME needs a part number")
            return candidate
    if cur.peek() == ord("]"):
        return ""
    raise ParseError("Bad section")


def _header_list(cur: Cursor) -> tuple[str, ...]:
    cur.open_list()
    names: list[str] = []
    while True:
        raw = cur.string() if cur.peek() in (0x22, 0x7B) else cur.take_while(_FIELD_CHARS)
        # A name from a string could hold anything, even CRLF, and it is echoed in the response.
        if not raw or not frozenset(raw) <= _FTEXT:
            raise ParseError("Expected header field name")
        names.append(raw.decode("ascii"))
        if cur.close_list():
            return tuple(names)


def _partial(cur: Cursor) -> tuple[int, int]:
    cur.expect(b"<")
    start = cur.number()
    cur.expect(b".")
    length = cur.nz_number()
    cur.expect(b">")
    return start, length
