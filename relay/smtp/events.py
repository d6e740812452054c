"""Events the SMTP engine hands to its session.

Events that need a decision (AuthAttempt, MailFrom, RcptTo, MessageData) keep the engine paused
until the session answers with `engine.accept()` or `engine.reject(code, text)`. The others are
notifications: the engine has already queued its reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()  # no complete command buffered: feed more bytes with receive_data()


@dataclass(frozen=True)
class Hello:
    """EHLO or HELO was answered; any transaction was reset."""

    name: str
    extended: bool


@dataclass(frozen=True)
class StartTLS:
    """The client asked for TLS and got 220: do the handshake, then call `engine.tls_started()`."""


@dataclass(frozen=True)
class AuthAttempt:
    """SASL credentials (PLAIN or LOGIN) to check; answer with accept() or reject()."""

    mechanism: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class MailFrom:
    address: str  # "" for the null sender <>
    params: dict[str, str | None]


@dataclass(frozen=True)
class RcptTo:
    address: str
    params: dict[str, str | None]


@dataclass(frozen=True)
class MessageData:
    """A complete, well-formed DATA section.

    `transmission` is the SMTP transmission form (CRLF line ends, dot-stuffing kept, ending with
    CRLF, without the terminating dot line): what /mxdeliv forwards. `content` is the message
    itself, dot-unstuffed.
    """

    sender: str
    recipients: tuple[str, ...]
    transmission: bytes = field(repr=False)

    @property
    def content(self) -> bytes:
        return unstuff(self.transmission)


@dataclass(frozen=True)
class Closed:
    """The conversation is over (QUIT, EOF, or the engine gave up): flush replies, then close."""

    reason: str


Event = Hello | StartTLS | AuthAttempt | MailFrom | RcptTo | MessageData | Closed


def unstuff(transmission: bytes) -> bytes:
    """Remove the dot that SMTP adds in front of every line starting with a dot."""
    if b"\r\n." not in transmission and not transmission.startswith(b"."):
        return transmission
    body = transmission.replace(b"\r\n.", b"\r\n")
    return body[1:] if body.startswith(b".") else body


def stuff(message: bytes) -> bytes:
    """The transmission form of a message with CRLF line ends (the inverse of `unstuff`)."""
    body = message.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body
