"""Parsing of SMTP command arguments (RFC 5321 4.1), kept apart from the state machine."""

from __future__ import annotations

import base64
import binascii
import re

BODY_TYPES = ("7BIT", "8BITMIME")
_PARAM_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


class SyntaxProblem(Exception):
    """A malformed argument, with the reply to send."""

    def __init__(self, text: str, code: int = 501):
        super().__init__(text)
        self.code = code
        self.text = text


def parse_path_and_params(arg: str, keyword: str) -> tuple[str, dict[str, str | None]]:
    """Parse `FROM:<addr> KEY=VALUE ...` (or `TO:`); returns the address and upper-cased params."""
    head, sep, rest = arg.partition(":")
    if not sep or head.strip().upper() != keyword:
        raise SyntaxProblem(f"5.5.4 Syntax: {keyword}:<address>")
    rest = rest.lstrip(" ")
    if rest.startswith("<"):
        close = rest.find(">")
        if close < 0:
            raise SyntaxProblem("5.1.7 Bad address syntax")
        path, tail = rest[1:close], rest[close + 1 :]
        if tail and not tail.startswith(" "):
            raise SyntaxProblem("5.1.7 Bad address syntax")
    else:
        # Postfix accepts a bare address without angle brackets; so do we.
        path, _, tail = rest.partition(" ")
    if ":" in path and path.startswith("@"):
        path = path.split(":", 1)[1]  # an obsolete source route: only the mailbox matters
    if any(c in path for c in " <>\t") or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise SyntaxProblem("5.1.7 Bad address syntax")
    return path, parse_params(tail)


def parse_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if not _PARAM_KEY_RE.match(key):
            raise SyntaxProblem(f"5.5.4 Bad parameter syntax: {key[:40]}")
        params[key.upper()] = value if eq else None
    return params


def mail_param_problem(params: dict[str, str | None], max_size: int) -> tuple[int, str] | None:
    """The reply for MAIL FROM parameters we cannot honour, or None if they are fine."""
    for key, value in params.items():
        if key == "SIZE":
            if not (value or "").isdigit():
                return 501, "5.5.4 Bad SIZE parameter"
            if int(value or 0) > max_size:
                return 552, "5.3.4 Message size exceeds fixed limit"
        elif key == "BODY":
            if (value or "").upper() not in BODY_TYPES:
                return 501, "5.5.4 Unsupported BODY parameter"
        elif key not in ("SMTPUTF8", "AUTH"):
            return 555, f"5.5.4 Unsupported option: {key}"
    return None


def decode_b64_text(text: str) -> str:
    """Decode one SASL response; raises SyntaxProblem on bad base64 or bad UTF-8."""
    try:
        return base64.b64decode(text.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SyntaxProblem("5.5.2 Invalid base64 data") from None


def parse_plain_response(text: str) -> tuple[str, str]:
    """SASL PLAIN (RFC 4616): `authzid NUL authcid NUL passwd` -> (username, password)."""
    decoded = decode_b64_text(text)
    fields = decoded.split("\0")
    if len(fields) != 3 or not fields[1]:
        raise SyntaxProblem("5.5.2 Invalid PLAIN response")
    authzid, authcid, password = fields
    if authzid and authzid != authcid:
        # Acting as someone else is never allowed here.
        raise SyntaxProblem("5.7.8 Authentication credentials invalid", 535)
    return authcid, password
