"""Strict framing of the SMTP DATA section, in bounded memory.

Only CRLF "." CRLF ends DATA. Anything that other parsers might read as an end of data (bare LF,
bare CR, "\\n.\\n", "\\r.\\r") stays inside the message and makes it invalid, so a message
cannot smuggle a second one past us or past the next hop. Bytes beyond the size limit are
counted but not kept.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMINATOR = b"\r\n.\r\n"
MAX_LINE = 1000  # RFC 5321 4.5.3.1.6: text lines, CRLF included


@dataclass(frozen=True)
class DataResult:
    transmission: bytes  # empty unless valid
    size: int  # octets received, in transmission form
    problem: str | None  # None, "too-big", "bare-newline" or "line-too-long"


class DataReader:
    """Feed chunks; `feed()` returns the leftover bytes once the terminator has been seen."""

    def __init__(self, max_size: int):
        self.max_size = max_size
        # Start with the CRLF that ended the DATA command line, so that a message that is just
        # ".\r\n" is found by the same search as every other terminator.
        self._buf = bytearray(b"\r\n")
        self._fed = 0
        self._dropping = False  # over the size limit: only the tail is kept, for the search
        self.result: DataResult | None = None

    def feed(self, chunk: bytes) -> bytes | None:
        """Consume bytes; None while DATA continues, else the bytes that follow the terminator."""
        if self.result is not None:
            raise RuntimeError("DATA already complete")
        start = max(0, len(self._buf) - (len(TERMINATOR) - 1))
        self._fed += len(chunk)
        self._buf += chunk
        end = self._buf.find(TERMINATOR, start)
        if end < 0:
            self._bound()
            return None
        rest = bytes(self._buf[end + len(TERMINATOR) :])
        # The message keeps the CRLF that ends its last line; ".\r\n" and the rest are not in it.
        size = self._fed - len(rest) - 3
        body = bytes(self._buf[2 : end + 2])
        self._buf = bytearray()
        self._finish(body, size)
        return rest

    def _bound(self) -> None:
        # The buffer may end with the first bytes of the terminator (".\r" after the message's
        # last CRLF), which are not message bytes: only more than that proves the message too big.
        if self._dropping or len(self._buf) - (len(TERMINATOR) - 1) > self.max_size:
            self._dropping = True
            del self._buf[: -(len(TERMINATOR) - 1)]

    def _finish(self, body: bytes, size: int) -> None:
        if self._dropping or size > self.max_size:
            self.result = DataResult(b"", size, "too-big")
        elif _has_bare_newline(body):
            self.result = DataResult(b"", size, "bare-newline")
        elif _longest_line(body) > MAX_LINE:
            self.result = DataResult(b"", size, "line-too-long")
        else:
            self.result = DataResult(body, size, None)


def _has_bare_newline(body: bytes) -> bool:
    crlf = body.count(b"\r\n")
    return body.count(b"\r") != crlf or body.count(b"\n") != crlf


def _longest_line(body: bytes) -> int:
    if len(body) <= MAX_LINE:
        return len(body)
    return max(map(len, body.split(b"\r\n"))) + 2
