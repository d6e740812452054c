"""Outcomes of a command handler other than OK."""

from __future__ import annotations


class No(Exception):
    """The command failed: tagged NO with an optional response code (e.g. TRYCREATE)."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class Bad(Exception):
    """The command was not acceptable in this state or form: tagged BAD."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class Disconnect(Exception):
    """End the connection now (timeout, client gone, fatal protocol error)."""
