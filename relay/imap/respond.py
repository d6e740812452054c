"""Response serializer: IMAP values to bytes, with the quoted-vs-literal choice made here.

Python values map to IMAP syntax: None -> NIL, int -> number, Atom -> as is, str/bytes -> a
quoted string when that is safe and short, else a literal, Literal -> always a literal,
list/tuple -> a parenthesised list.
"""

from __future__ import annotations

from collections.abc import Iterable


class Atom(str):
    """Sent verbatim (flags, keywords, capability names, section names)."""


class Literal(bytes):
    """Always sent as {n}CRLF + bytes, even when it would fit in quotes (METADATA values)."""


MAX_QUOTED = 1000
# Bytes a quoted string cannot hold (RFC 3501 QUOTED-CHAR: 7-bit, no CR/LF/NUL).
_UNQUOTABLE = frozenset({0x00, 0x0A, 0x0D}) | frozenset(range(0x80, 0x100))

Value = None | int | str | bytes | list | tuple


def encode(value: Value) -> bytes:
    out = bytearray()
    _encode_into(out, value)
    return bytes(out)


def _encode_into(out: bytearray, value: Value) -> None:
    if value is None:
        out += b"NIL"
    elif isinstance(value, bool):
        raise TypeError("booleans have no IMAP form")
    elif isinstance(value, int):
        out += str(value).encode("ascii")
    elif isinstance(value, Atom):
        out += value.encode("ascii")
    elif isinstance(value, Literal):
        out += b"{%d}\r\n" % len(value)
        out += value
    elif isinstance(value, str):
        _string_into(out, value.encode("utf-8", "surrogateescape"))
    elif isinstance(value, bytes | bytearray | memoryview):
        _string_into(out, bytes(value))
    elif isinstance(value, list | tuple):
        out += b"("
        for i, item in enumerate(value):
            if i:
                out += b" "
            _encode_into(out, item)
        out += b")"
    else:
        raise TypeError(f"cannot encode {type(value).__name__}")


def _string_into(out: bytearray, raw: bytes) -> None:
    if len(raw) <= MAX_QUOTED and not _UNQUOTABLE.intersection(raw):
        out += b'"'
        out += raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        out += b'"'
    else:
        out += b"{%d}\r\n" % len(raw)
        out += raw


def untagged(*items: Value) -> bytes:
    """`* item item ...` with each item encoded; plain text goes in as Atom."""
    return b"* " + b" ".join(encode(i) for i in items) + b"\r\n"


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    return _status_line(tag, status, text, code)


def status(status: str, text: str, code: str | None = None) -> bytes:
    """An untagged status response: `* OK [code] text`, `* BYE text`, ..."""
    return _status_line("*", status, text, code)


def _status_line(tag: str, status: str, text: str, code: str | None) -> bytes:
    parts = [tag, status]
    if code:
        parts.append(f"[{code}]")
    if text:
        parts.append(text.replace("\r", " ").replace("\n", " "))
    return " ".join(parts).encode("utf-8", "replace") + b"\r\n"


def continuation(text: str = "") -> bytes:
    return b"+ " + text.encode("ascii") + b"\r\n"


def flag_list(flags: Iterable[str]) -> tuple[Atom, ...]:
    """Flags in a stable order: system flags first, then keywords, each alphabetical."""
    return tuple(Atom(f) for f in sorted(flags, key=lambda f: (not f.startswith("\\"), f)))
