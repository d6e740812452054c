"""Requests and responses as route handlers see them: plain data, no sockets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from relay.net import Peer

# Sent with every response: nothing on these pages needs scripts, frames or outside resources.
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
]


@dataclass
class Request:
    method: str
    target: str  # path and query exactly as sent
    headers: list[tuple[str, str]]  # names lower-case
    body: bytes
    peer: Peer
    service: str  # "http" or "https"

    @property
    def path(self) -> str:
        return _split(self.target)[0]

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(_split(self.target)[1])

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)


def _split(target: str) -> tuple[str, str]:
    """(path, query) of a request target; urlsplit refuses some (``//[``: "Invalid IPv6 URL"),
    which are then read as the origin-form they claim to be (and found nowhere: 404)."""
    try:
        parts = urlsplit(target)
    except ValueError:
        path, _, query = target.partition("?")
        return path, query.partition("#")[0]
    return parts.path, parts.query


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def all_headers(self) -> list[tuple[str, str]]:
        """A header the response sets itself replaces the default of that name (a page with its
        own Content-Security-Policy must not send the default one too: both would apply)."""
        base = [("Content-Type", self.content_type), ("Content-Length", str(len(self.body)))]
        own = {name.lower() for name, _ in self.headers}
        defaults = [(name, value) for name, value in SECURITY_HEADERS if name.lower() not in own]
        return base + defaults + self.headers


def json_response(status: int, value: Any, *, no_store: bool = True) -> Response:
    headers = [("Cache-Control", "no-store")] if no_store else []
    body = json.dumps(value).encode()
    return Response(status, body, "application/json", headers)


def text_response(
    status: int, text: str, *, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response(status, text.encode(), headers=headers or [])


def redirect(location: str, status: int = 301) -> Response:
    return text_response(status, f"moved to {location}\n", headers=[("Location", location)])
