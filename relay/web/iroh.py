"""The HTTP side of the built-in iroh relay: `GET /relay` (and the legacy `/derp`) with
`Upgrade: iroh derp http` is switched by the server (relay/web/server.py) to
relay.iroh.relay; these routes answer the rest: a GET without the upgrade, and the probes
`/ping` and `/generate_204` that iroh and the Delta Chat cores use.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from relay.config import Config
from relay.web.types import Request, Response, text_response

if TYPE_CHECKING:
    from relay.app import App

UPGRADE = "iroh derp http"
RELAY_PATHS = frozenset({"/relay", "/derp"})
PATHS = RELAY_PATHS | {"/ping", "/generate_204"}
CHALLENGE_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")  # upstream's rule for X-Tailscale-Challenge


def wants_upgrade(request: Request, config: Config) -> bool:
    upgrade = (request.header("upgrade") or "").strip().lower()
    return (
        config.iroh.enabled
        and request.method == "GET"
        and request.path in RELAY_PATHS
        and upgrade == UPGRADE
    )


async def relay_page(request: Request, app: App) -> Response:
    if not app.config.iroh.enabled:
        return text_response(404, "not found\n")
    return text_response(426, "iroh relay: use Upgrade: iroh derp http\n")


async def ping(request: Request, app: App) -> Response:
    if not app.config.iroh.enabled:
        return text_response(404, "not found\n")
    return text_response(200, "pong\n")


async def generate_204(request: Request, app: App) -> Response:
    if not app.config.iroh.enabled:
        return text_response(404, "not found\n")
    headers = []
    challenge = request.header("x-tailscale-challenge")
    if challenge is not None and CHALLENGE_RE.fullmatch(challenge):
        headers.append(("X-Tailscale-Response", f"response {challenge}"))
    return Response(204, headers=headers)
