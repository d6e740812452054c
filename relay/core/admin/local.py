"""Operations only the local admin socket offers (hwctl on the box): onboarding links for the
display, factory reset, and the identity backup and restore (keys, certificates and accounts,
which must never leave the box over the network unencrypted)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay import onboarding
from relay.config import Config
from relay.core.admin.errors import AdminError
from relay.core.admin.reset import schedule_factory_reset
from relay.durable import write_atomically
from relay.shadowsocks.link import PASSWORD_FILE, proxy_url

if TYPE_CHECKING:
    from relay.app import App


def new_onboarding(app: App) -> dict[str, Any]:
    """The link a new user scans, and the `ss://` link (or None) for blocked networks."""
    config = app.config
    proxy = proxy_url(config)  # the port is open whenever configured (else no relay runs)
    if not config.is_lan:
        # Domain mode: one static link; the client asks /new for its credentials.
        url = onboarding.dcaccount_url(config)
        return {"mode": "dcaccount", "url": url, "addr": None, "proxy_url": proxy}
    addr, password = onboarding.new_credentials(config)
    app.admin.remember_onboarding(addr)
    url = onboarding.dclogin_url(config, addr, password)
    return {"mode": "dclogin", "url": url, "addr": addr, "proxy_url": proxy}


def factory_reset(app: App) -> dict[str, Any]:
    schedule_factory_reset(app.config)
    app.log.warning("factory-reset-scheduled")
    app.admin.hub.publish({"type": "factory_reset"})
    app.admin.restart_requested.set()
    return {"scheduled": True}


async def identity_export(app: App) -> dict[str, Any]:
    """What a fresh box needs to become this relay again: config, keys, certificates and
    accounts (password hashes). Never mail. hwctl encrypts it before it leaves the box."""
    config = app.config
    files = {}
    for rel, path in _identity_files(config):
        files[rel] = base64.b64encode(path.read_bytes()).decode()
    accounts = await app.store.export_accounts()
    return {"domain": config.mail_domain, "files": files, "accounts": accounts}


async def identity_import(app: App, params: dict[str, Any]) -> dict[str, Any]:
    """Restore an identity_export on this box, then restart to load keys and config."""
    config = app.config
    files = params.get("files")
    if not isinstance(files, dict):
        raise AdminError(400, "files missing")
    targets = {rel: path for rel, path in _identity_targets(config, files)}
    accounts = params.get("accounts") or []
    if accounts:
        await app.store.import_accounts(accounts)
    for rel, path in targets.items():
        write_atomically(path, base64.b64decode(files[rel]))
    app.log.warning("identity-restored", files=len(targets), accounts=len(accounts))
    app.admin.restart_requested.set()  # same restart path as a reset, without the flag
    return {"restored": len(targets), "accounts": len(accounts)}


IDENTITY_DIRS = ("tls", "dkim", "acme")
# Generated secrets that users hold: the ss:// link in their apps must still work after a restore.
IDENTITY_FILES = (PASSWORD_FILE,)


def _identity_files(config: Config) -> list[tuple[str, Path]]:
    found = []
    if config.source is not None and Path(config.source).is_file():
        found.append(("config/relay.toml", Path(config.source)))
    for name in IDENTITY_DIRS:
        base = config.data_dir / name
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file():
                    found.append((f"{name}/{path.relative_to(base).as_posix()}", path))
    for name in IDENTITY_FILES:
        if (config.data_dir / name).is_file():
            found.append((name, config.data_dir / name))
    return found


def _identity_targets(config: Config, files: dict[str, Any]) -> list[tuple[str, Path]]:
    """Where each restored file goes; anything outside the identity directories is refused."""
    targets = []
    for rel in files:
        parts = Path(rel).parts
        if rel == "config/relay.toml" and config.source is not None:
            targets.append((rel, Path(config.source)))
        elif rel in IDENTITY_FILES:
            targets.append((rel, config.data_dir / rel))
        elif len(parts) >= 2 and parts[0] in IDENTITY_DIRS and ".." not in parts:
            if Path(rel).is_absolute():
                raise AdminError(400, f"refusing path {rel!r}")
            targets.append((rel, config.data_dir / rel))
        else:
            raise AdminError(400, f"refusing path {rel!r}")
    return targets
