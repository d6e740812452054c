"""Just enough MIME (RFC 2045/2046) for the policy: headers, one level of parts, decoding.

Messages arrive in CRLF form (the SMTP engine refuses bare CR/LF), so the splitting works on
raw bytes and never copies a large body line by line. Ambiguities that different parsers could
read differently (two Content-Type fields, a multipart without its closing delimiter) are
errors: the policy must see the message exactly as the recipient's client will.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from email.message import Message

from relay.mime import boundary_of, header_info

_HEADER_NAME_RE = re.compile(rb"^[!-9;-~]+:")


class MimeError(Exception):
    """The structure cannot be parsed unambiguously."""


@dataclass(frozen=True)
class Part:
    headers: Message  # header fields only, no payload
    body: bytes  # raw, still transfer-encoded

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()

    @property
    def is_multipart(self) -> bool:
        return self.headers.get_content_maintype() == "multipart"

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)

    def decoded_body(self) -> bytes:
        encoding = (self.header("Content-Transfer-Encoding") or "7bit").strip().lower()
        try:
            if encoding == "base64":
                return binascii.a2b_base64(self.body)
            if encoding == "quoted-printable":
                return binascii.a2b_qp(self.body)
        except binascii.Error as e:
            raise MimeError(f"bad {encoding} body: {e}") from None
        return self.body


def parse(data: bytes, *, top_level: bool = True) -> Part:
    """Split a message (or a body part) into headers and body."""
    if data.startswith(b"\r\n"):
        head, body = b"", data[2:]
    else:
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            head, body = data, b""
    if top_level and not head:
        raise MimeError("no header fields")
    if head[:1] in (b" ", b"\t"):
        raise MimeError("the header starts with a continuation line")
    for line in head.split(b"\r\n") if head else ():
        if not (_HEADER_NAME_RE.match(line) or line[:1] in (b" ", b"\t")) or line.isspace():
            raise MimeError("a header line is neither a field nor a continuation")
    headers = header_info(head)
    if len(headers.get_all("Content-Type") or []) > 1:
        raise MimeError("more than one Content-Type field")
    return Part(headers, body)


def children(part: Part) -> list[Part]:
    """The body parts of a multipart entity (one level); raises MimeError if malformed."""
    if not part.is_multipart:
        raise MimeError("not multipart")
    boundary = boundary_of(part.headers)
    if not boundary or len(boundary) > 70:
        raise MimeError("missing or invalid boundary")
    body = part.body
    dash = b"--" + boundary.encode("utf-8", "replace")
    parts: list[Part] = []
    start: int | None = None  # where the current part's content begins
    pos = 0
    while True:
        # A delimiter is "--boundary" at the start of a line; the CRLF before it is part of it.
        found = body.find(dash, pos)
        if found < 0:
            raise MimeError("multipart without its closing delimiter")
        pos = found + len(dash)
        if found != 0 and body[found - 2 : found] != b"\r\n":
            continue
        line_end = body.find(b"\r\n", pos)
        line_end = len(body) if line_end < 0 else line_end
        rest = body[pos:line_end]
        closing = rest.startswith(b"--")
        if rest[2 if closing else 0 :].strip(b" \t"):
            continue  # "--boundaryX": a longer boundary-like line, not ours
        if start is not None:
            parts.append(parse(body[start : max(start, found - 2)], top_level=False))
        if closing:  # what follows is the epilogue
            return parts
        start = line_end + 2
