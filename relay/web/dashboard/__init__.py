"""`/admin`: the admin dashboard, three static files that call `POST /api/admin` from the browser.

The page holds no data: without the token (typed in, or from the `#token=` fragment that
`relay admin-token` prints) it shows only the login form, and every figure comes from the API,
which checks the token on each call. The files ship as package data next to this module; their
Content-Security-Policy allows this origin's script, style and API and nothing else (no inline
script, no frames, no forms posted anywhere).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

from relay.web.types import Request, Response

if TYPE_CHECKING:
    from relay.app import App

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
FILES = {
    "/admin": ("index.html", "text/html; charset=utf-8"),
    "/admin/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/admin/style.css": ("style.css", "text/css; charset=utf-8"),
}


@cache
def _read(name: str) -> bytes:
    return files(__name__).joinpath(name).read_bytes()


async def page(request: Request, app: App) -> Response:
    name, content_type = FILES[request.path]
    # no-cache: a browser revalidates, so an upgraded relay serves its new script at once.
    headers = [("Content-Security-Policy", CSP), ("Cache-Control", "no-cache")]
    return Response(200, _read(name), content_type, headers)
