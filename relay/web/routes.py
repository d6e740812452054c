"""The routing table: which path answers which methods, with what body limit.

Adding an endpoint is one `Route` line here plus its handler module; the server applies the
method check (405), the body limit (413) and the plain-HTTP policy from the route itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relay.config import Config
from relay.web import acme, admin, autoconfig, dashboard, invite, iroh, mxdeliv, onboard
from relay.web.types import Request, Response
from relay.webimap import rest as webimap

if TYPE_CHECKING:
    from relay.app import App

Handler = Callable[[Request, "App"], Awaitable[Response]]

SMALL_BODY = 4096  # enough for any form or JSON these pages accept


def small_body(config: Config) -> int:
    return SMALL_BODY


@dataclass(frozen=True)
class Route:
    path: str
    methods: frozenset[str]
    handler: Handler
    max_body: Callable[[Config], int] = small_body
    prefix: bool = False  # path is a prefix ("/.well-known/acme-challenge/")
    plain_http: bool = False  # answered over plain HTTP in domain mode instead of redirecting
    too_large: str = ""  # the 413 body, when the route's clients expect a particular one
    # The answer while the route's feature is switched off (read per request, so a reload
    # switches it), given before the body is read or anyone is authenticated.
    unavailable: Callable[[Config], Response | None] | None = None

    def matches(self, path: str) -> bool:
        return path.startswith(self.path) if self.prefix else path == self.path


GET = frozenset({"GET"})
GET_POST = frozenset({"GET", "POST"})
POST_OPTIONS = frozenset({"POST", "OPTIONS"})
WEBIMAP = frozenset({"GET", "POST", "DELETE", "OPTIONS"})

ROUTES: list[Route] = [
    Route("/", GET, invite.page),
    Route("/new", GET_POST, onboard.new_account),
    Route("/cgi-bin/newemail.py", GET_POST, onboard.new_account),
    Route("/.well-known/autoconfig/mail/config-v1.1.xml", GET, autoconfig.config_xml),
    Route("/mail/config-v1.1.xml", GET, autoconfig.config_xml),
    Route("/.well-known/mta-sts.txt", GET, autoconfig.mta_sts),
    Route(acme.CHALLENGE_PREFIX, GET, acme.challenge, prefix=True, plain_http=True),
    Route(
        "/mxdeliv",
        frozenset({"POST"}),
        mxdeliv.route,
        max_body=lambda config: config.limits.max_message_size,
        plain_http=True,
        too_large="552 Message exceeds maximum size",
    ),
    Route("/api/admin", frozenset({"POST"}), admin.api, max_body=lambda config: admin.MAX_BODY),
    Route("/admin", GET, dashboard.page),  # the dashboard: a client of /api/admin
    Route("/admin/app.js", GET, dashboard.page),
    Route("/admin/style.css", GET, dashboard.page),
    Route("/relay", GET, iroh.relay_page, plain_http=True),
    Route("/derp", GET, iroh.relay_page, plain_http=True),
    Route("/ping", GET, iroh.ping, plain_http=True),
    Route("/generate_204", GET, iroh.generate_204, plain_http=True),
    # WebIMAP (relay/webimap): send first, it takes a whole message; the rest is small JSON.
    *(
        Route(
            path,
            POST_OPTIONS,
            webimap.send,
            max_body=webimap.send_body_limit,
            too_large=webimap.TOO_LARGE,
            unavailable=webimap.send_unavailable,
        )
        for path in webimap.SEND_PATHS
    ),
    Route(
        webimap.PREFIX,
        WEBIMAP,
        webimap.route,
        max_body=webimap.request_body_limit,
        prefix=True,
        too_large=webimap.TOO_LARGE,
        unavailable=webimap.unavailable,
    ),
]


def find(path: str) -> Route | None:
    return next((route for route in ROUTES if route.matches(path)), None)


def allowed_methods(route: Route) -> frozenset[str]:
    """HEAD comes with every GET (the server drops the body)."""
    return route.methods | {"HEAD"} if "GET" in route.methods else route.methods
