"""Sans-IO reading of SMTP server replies (RFC 5321 4.2): bytes in, complete replies out."""

from __future__ import annotations

from dataclasses import dataclass

MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 100


class ReplyError(Exception):
    """The server sent something that is not an SMTP reply."""


@dataclass(frozen=True)
class PeerReply:
    code: int
    lines: tuple[str, ...]  # text after the code, one per line

    @property
    def text(self) -> str:
        return " ".join(line for line in self.lines if line)

    def line(self) -> str:
        """The reply as one line, as it is passed on to logs, bounces and queue entries."""
        return f"{self.code} {self.text}".rstrip()

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400

    def keywords(self) -> set[str]:
        """EHLO extension keywords, upper case (the first line is the greeting)."""
        return {line.split(" ", 1)[0].upper() for line in self.lines[1:] if line}


class ReplyReader:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._lines: list[str] = []
        self._code = 0

    def feed(self, data: bytes | bytearray) -> list[PeerReply]:
        self._buf += data
        replies: list[PeerReply] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_REPLY_LINE:
                    raise ReplyError("reply line too long")
                return replies
            raw = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[: end + 1]
            reply = self._line(raw.decode("utf-8", "replace"))
            if reply is not None:
                replies.append(reply)

    def _line(self, line: str) -> PeerReply | None:
        code, sep = line[:3], line[3:4]
        if not (code.isdigit() and sep in ("", " ", "-")) or code[0] not in "2345":
            raise ReplyError(f"not an SMTP reply: {line[:80]!r}")
        if self._lines and int(code) != self._code:
            raise ReplyError("multi-line reply changed its code")
        self._code = int(code)
        self._lines.append(line[4:])
        if len(self._lines) > MAX_REPLY_LINES:
            raise ReplyError("too many reply lines")
        if sep == "-":
            return None
        reply = PeerReply(code=self._code, lines=tuple(self._lines))
        self._lines = []
        return reply
