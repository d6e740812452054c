"""The entity tree of a MIME message (RFC 2045/2046), in one bounded pass over its bytes.

Entities are byte offsets into the stored message, so a part's bytes are returned exactly as
stored. The tree is built without recursion and within limits (MAX_DEPTH, MAX_PARTS), so no
message can make the work grow faster than its size: IMAP's FETCH answers and the policy's
check of the mail it lets through without encryption both read a message through this.
The stdlib email package parses header values only; it never sees a body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value
from typing import Any

_HEADER_PARSER = BytesHeaderParser(policy=compat32)
_FIELD_NAME_RE = re.compile(r"[!-9;-~]+:")  # the stdlib parser's field line, used with match


def header_info(head: bytes) -> Message:
    """The header block `head` (its closing empty line optional) as the stdlib parser reads it
    under compat32, field for field. A block of well-formed CRLF lines (fields and their
    continuations) is read here, about ten times faster; anything else goes to that parser,
    which also notes the defects."""
    text = head.decode("ascii", "surrogateescape")
    if text.endswith("\r\n\r\n"):
        text = text[:-4]
    elif text.endswith("\r\n"):
        text = text[:-2]
    bare = text.replace("\r\n", "")
    if "\r" in bare or "\n" in bare:  # the stdlib parser ends lines at a bare CR or LF too
        return _HEADER_PARSER.parsebytes(head)
    fields: list[list[str]] = []
    for line in text.split("\r\n") if text else ():
        if line[:1] in (" ", "\t") and fields:
            fields[-1].append(line)
        elif _FIELD_NAME_RE.match(line):
            fields.append([line])
        else:  # a leading continuation, an empty line, a line that is no field
            return _HEADER_PARSER.parsebytes(head)
    info = Message(policy=compat32)
    for first, *continued in fields:
        name, value = first.split(":", 1)
        value = value.lstrip(" \t") + "".join("\r\n" + line for line in continued)
        info.set_raw(name, value.rstrip("\r\n"))
    return info


@dataclass
class Entity:
    """One MIME entity: a header block followed by a body, as offsets into the stored bytes."""

    data: bytes
    start: int  # where the header begins
    body_start: int  # where the body begins (after the blank line)
    end: int
    info: Message = field(repr=False)  # parsed header (for types and parameters)
    children: list[Entity] = field(default_factory=list)  # multipart parts
    embedded: Entity | None = None  # the message inside a message/rfc822 part
    opaque: bool = False  # a multipart or message beyond the limits: its body is not looked into

    @property
    def header(self) -> bytes:
        return self.data[self.start : self.body_start]

    @property
    def body(self) -> bytes:
        return self.data[self.body_start : self.end]

    @property
    def whole(self) -> bytes:
        return self.data[self.start : self.end]


def split_header(data: bytes, start: int = 0, end: int | None = None) -> int:
    """Offset of the body: just after the first empty line, or `end` if there is none."""
    end = len(data) if end is None else end
    match = _EMPTY_LINE.search(data, start, end)
    return end if match is None else match.end()


# Limits on what one message can make the parser do, as Postfix (mime_nesting_limit) and
# Dovecot's message parser: an entity nested deeper, or any part after the last one counted,
# is not looked into (it is shown as one opaque application/octet-stream part).
MAX_DEPTH = 100
MAX_PARTS = 10_000

_EMPTY_LINE = re.compile(rb"^\r?\n", re.MULTILINE)
# Line starts that can end a header (an empty line) or be a boundary delimiter ("--").
_HEADER_STOP = re.compile(rb"^(?:\r?\n|--)", re.MULTILINE)
_DASHES = re.compile(rb"^--", re.MULTILINE)


def parse(data: bytes) -> Entity:
    """The entity tree of a message, in one pass over its bytes (no recursion)."""
    return _Parser(data).run()


def limit_exceeded(data: bytes) -> str | None:
    """Which limit the message's structure goes beyond, or None (for mail let in unencrypted)."""
    parser = _Parser(data)
    parser.run()
    return parser.exceeded


def header_params(info: Message, header: str = "content-type") -> list[tuple[str, Any]] | None:
    """The parameters of a header as the email package reads them, or None if there are none
    or they cannot be read: RFC 2231 continuations mixed wrongly (`name*7=x; name*=y`) make
    the stdlib raise TypeError, and a hostile header must not crash whoever asked."""
    try:
        return info.get_params(header=header)
    except (TypeError, ValueError, IndexError):
        return None


def boundary_of(info: Message) -> str | None:
    """Message.get_boundary(), without its TypeError on hostile parameters."""
    for key, value in (header_params(info) or [])[1:]:
        if key.lower() == "boundary":
            return collapse_rfc2231_value(value).rstrip() or None
    return None


def parse_header(data: bytes) -> Entity:
    """The top-level entity alone, for what needs only the header (ENVELOPE)."""
    body_start = split_header(data)
    return Entity(data, 0, body_start, len(data), _header_info(data, 0, body_start, "text/plain"))


def _header_info(data: bytes, start: int, end: int, default_type: str) -> Message:
    info = header_info(data[start:end])
    info.set_default_type(default_type)
    return info


@dataclass
class _Open:
    entity: Entity
    depth: int
    default_type: str
    in_header: bool = True
    boundary: bytes | None = None  # set while this multipart still takes parts


class _Parser:
    """A stack of the entities open at the current position; boundary lines close them.

    Every line that could matter starts with "--" or ends a header, so the scan jumps from one
    such line to the next with a regex and each byte is looked at a bounded number of times.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.stack: list[_Open] = []
        self.boundaries: dict[bytes, int] = {}  # boundary → index of its multipart in stack
        self.parts = 0
        self.exceeded: str | None = None  # the first limit the message reached

    def run(self) -> Entity:
        data = self.data
        root = self._open(0, 0, "text/plain")
        pos = 0
        while pos < len(data) and self.parts < MAX_PARTS:
            top = self.stack[-1]
            pattern = _HEADER_STOP if top.in_header else _DASHES
            match = pattern.search(data, pos)
            if match is None:
                break
            line_start = match.start()
            line_end = data.find(b"\n", line_start)
            line_end = len(data) if line_end < 0 else line_end + 1
            if match.group() != b"--":  # the empty line that ends the header
                self._end_header(top, line_end, expand=True)
            elif not self._boundary(line_start, line_end):
                pass
            pos = line_end
        if self.parts >= MAX_PARTS:
            self.exceeded = self.exceeded or f"more than {MAX_PARTS} MIME parts"
        for frame in self.stack:
            self._close(frame, len(data))
        return root

    def _open(self, start: int, depth: int, default_type: str) -> Entity:
        entity = Entity(self.data, start, start, len(self.data), Message())
        self.stack.append(_Open(entity, depth, default_type))
        self.parts += 1
        return entity

    def _end_header(self, frame: _Open, body_start: int, *, expand: bool) -> None:
        frame.in_header = False
        entity = frame.entity
        entity.body_start = body_start
        entity.info = info = _header_info(self.data, entity.start, body_start, frame.default_type)
        if not expand:
            return
        if frame.depth >= MAX_DEPTH:
            entity.opaque = info.get_content_maintype() in ("multipart", "message")
            if entity.opaque:
                self.exceeded = self.exceeded or f"MIME nesting deeper than {MAX_DEPTH} levels"
            return
        if info.get_content_maintype() == "multipart":
            boundary = boundary_of(info)
            if boundary:
                key = boundary.encode("utf-8", "replace")
                if key not in self.boundaries:  # an outer part already ends at such lines
                    frame.boundary = key
                    self.boundaries[key] = len(self.stack) - 1
        elif info.get_content_type() == "message/rfc822":
            entity.embedded = self._open(body_start, frame.depth + 1, "text/plain")

    def _boundary(self, line_start: int, line_end: int) -> bool:
        """Handle a delimiter line of an open multipart; False if the line is not one."""
        text = self.data[line_start + 2 : line_end].rstrip(b" \t\r\n")
        owner = self.boundaries.get(text)
        closing = False
        if text.endswith(b"--"):
            outer = self.boundaries.get(text[:-2])
            if outer is not None and (owner is None or outer < owner):
                owner, closing = outer, True
        if owner is None:
            return False
        # The line end before a delimiter belongs to the delimiter.
        part_end = line_start
        if part_end and self.data[part_end - 1 : part_end] == b"\n":
            part_end -= 2 if self.data[part_end - 2 : part_end] == b"\r\n" else 1
        while len(self.stack) > owner + 1:
            self._close(self.stack.pop(), part_end)
        frame = self.stack[owner]
        if closing:
            del self.boundaries[text[:-2]]
            frame.boundary = None
        else:
            frame.entity.children.append(
                self._open(line_end, frame.depth + 1, self._child_type(frame.entity))
            )
        return True

    def _close(self, frame: _Open, end: int) -> None:
        entity = frame.entity
        end = max(end, entity.start)
        if frame.in_header:
            self._end_header(frame, end, expand=False)
        # A blank line just before a delimiter ends no header: its line end is the delimiter's.
        entity.body_start = min(entity.body_start, end)
        entity.end = end
        if frame.boundary is not None:
            del self.boundaries[frame.boundary]
            frame.boundary = None

    @staticmethod
    def _child_type(multipart: Entity) -> str:
        return (
            "message/rfc822" if multipart.info.get_content_subtype() == "digest" else "text/plain"
        )
