"""Structured one-line logs to stderr, with a no-log mode that drops addresses and IPs.

Each line is `LEVEL event key=value ...`. Values that identify people (addresses, IPs) must be
passed through `Logger.redact`, which replaces them when `privacy.no_log` is set. As a second
line of defence, no-log mode also scrubs anything that looks like an address or IP from every
line, so a forgotten `redact()` cannot leak.
"""

from __future__ import annotations

import re
import sys
import time
import traceback
from typing import Any, TextIO

REDACTED = "<redacted>"
_PERSONAL_RE = re.compile(
    r"[^\s<>\"'=]+@[^\s<>\"',;]+"  # addresses, also user@[1.2.3.4]
    r"|\b\d{1,3}(?:\.\d{1,3}){3}\b"  # IPv4
    r"|\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}\b",  # IPv6
    re.IGNORECASE,
)
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Logger:
    def __init__(self, *, no_log: bool = False, stream: TextIO | None = None, level: str = "info"):
        self.no_log = no_log
        self.stream = stream
        self.threshold = _LEVELS[level]

    def redact(self, value: Any) -> Any:
        return REDACTED if self.no_log else value

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def exception(self, event: str, error: BaseException, **fields: Any) -> None:
        """An error event with the exception and its traceback, still on one line (newlines
        escaped); in no-log mode addresses and IPs in it are scrubbed like everywhere else."""
        trace = "".join(traceback.format_exception(error)).strip()
        self._emit("error", event, {**fields, "error": repr(error), "traceback": trace})

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if _LEVELS[level] < self.threshold:
            return
        parts = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), level.upper(), event]
        parts += [f"{key}={_quote(value)}" for key, value in fields.items()]
        line = " ".join(parts)
        if self.no_log:
            line = _PERSONAL_RE.sub(REDACTED, line)
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text
