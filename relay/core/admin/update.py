"""The admin side of updates: their state, and an install from a file or a manifest URL.

An install is local only (the admin socket: hwctl with a USB stick, `relay update install`): a
path names a file on the box, and a URL makes the box download and run what it finds there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay.core.admin.errors import AdminError
from relay.core.update.updater import FromFile, FromManifest, Source, UpdateBusy

if TYPE_CHECKING:
    from relay.app import App


async def update_status(app: App, body: dict[str, Any]) -> dict[str, Any]:
    return app.update.status()


async def update_install(app: App, body: dict[str, Any]) -> dict[str, Any]:
    """Start an install from {"path": a bundle file} or {"url": an update manifest}."""
    try:
        app.update.submit(_source(body))
    except UpdateBusy as e:
        raise AdminError(409, str(e)) from None
    return app.update.status()


def _source(body: dict[str, Any]) -> Source:
    path, url = body.get("path"), body.get("url")
    if (path is None) == (url is None):
        raise AdminError(400, "give either path (a .raucb bundle) or url (an update manifest)")
    if url is not None:
        if not isinstance(url, str) or not url.startswith("https://") or len(url) <= 8:
            raise AdminError(400, "url must be an https:// URL of an update manifest")
        return FromManifest(url)
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise AdminError(400, "path must be an absolute path of a .raucb bundle")
    if not Path(path).is_file():
        raise AdminError(400, f"no bundle file at {path}")
    return FromFile(Path(path))
