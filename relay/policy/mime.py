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
from email.parser import BytesHeaderParser
from email.policy import compat32

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
    headers = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n\r\n")
    if len(headers.get_all("Content-Type") or []) > 1:
        raise MimeError("more than one Content-Type field")
    return Part(headers, body)


def children(part: Part) -> list[Part]:
    """The body parts of a multipart entity (one level); raises MimeError if malformed."""
    if not part.is_multipart:
        raise MimeError("not multipart")
    boundary = part.headers.get_boundary()
    if not boundary or len(boundary) > 70:
        raise MimeError("missing or invalid boundary")
    delimiter = re.compile(
        rb"(?:^|\r\n)--"
        + re.escape(boundary.encode("utf-8", "replace"))
        + rb"(--)?[ \t]*(?=\r\n|\Z)"
    )
    parts: list[Part] = []
    start: int | None = None
    for match in delimiter.finditer(part.body):
        if start is not None:
            parts.append(parse(part.body[start : match.start()], top_level=False))
        if match.group(1):  # the close delimiter; what follows is the epilogue
            return parts
        start = match.end() + 2  # after the CRLF that ends the delimiter line
    raise MimeError("multipart without its closing delimiter")
