"""Settings, services, registration and federation policy: every change is written to the config
file by relay.config_edit (validated by the loader first) and applied through the reload path,
whose answer says which keys need a restart (`restart_required`)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from relay import config_edit
from relay.config import ConfigError
from relay.core.admin.errors import AdminError, action, require_str
from relay.iroh.where import on_https

if TYPE_CHECKING:
    from relay.app import App

# /admin/services/<name> -> the boolean key that switches it (madmail's toggles).
SERVICE_KEYS = {
    "turn": "turn.enabled",
    "iroh": "iroh.enabled",
    "shadowsocks": "shadowsocks.enabled",
    "webimap": "webimap.enabled",
    "websmtp": "webimap.send",
}
# madmail's names for settings that have an equivalent here (case and underscores ignored).
ALIASES = {
    "maxmessagesize": "limits.max_message_size",
    "messageretention": "retention.delete_mails_after",
    "federationpolicy": "federation.policy",
    "registrationopen": "accounts.registration_open",
    "jitregistrationenabled": "accounts.jit",
}


def setting_key(name: str) -> str:
    if name in config_edit.KEYS:
        return name
    key = ALIASES.get(name.replace("_", "").lower())
    if key is None:
        raise AdminError(404, f"unknown setting {name!r}")
    return key


async def change(app: App, changes: dict[str, Any]) -> dict[str, Any]:
    """Write `changes` ({key: value, None = back to the default}) and apply them live."""
    source = app.config.source
    if source is None:
        raise AdminError(
            409, "this relay runs the embedded default without a config file: start it with"
            " --config to change settings"
        )  # fmt: skip
    async with app.admin.config_lock:
        try:
            typed = {
                key: config_edit.parse_value(key, value) if isinstance(value, str) else value
                for key, value in changes.items()
            }
            # Blocking (a lock on the file's directory, fsync): off the event loop.
            await trio.to_thread.run_sync(config_edit.set_values, source, typed)
        except ConfigError as e:
            raise AdminError(400, str(e)) from None
        return await app.reload()


async def all_settings(app: App, body: dict[str, Any]) -> dict[str, Any]:
    return {key: config_edit.get_value(app.config, key) for key in config_edit.KEYS}


async def get_setting(app: App, body: dict[str, Any], name: str) -> dict[str, Any]:
    key = setting_key(name)
    value = config_edit.get_value(app.config, key)
    return {"key": key, "value": value, "is_set": _is_set(app.config.source, key)}


def _is_set(source: Path | None, key: str) -> bool:
    """Whether the config file names the key (else its default applies)."""
    if source is None:
        return False
    try:
        table: Any = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    for part in key.split("."):
        if not isinstance(table, dict) or part not in table:
            return False
        table = table[part]
    return True


async def set_setting(app: App, body: dict[str, Any], name: str) -> dict[str, Any]:
    key = setting_key(name)
    if action(body, "set", "reset") == "set":
        if "value" not in body:
            raise AdminError(400, "value is required")
        result = await change(app, {key: body["value"]})
    else:
        result = await change(app, {key: None})
    return await get_setting(app, {}, key) | result


def _service(name: str) -> str:
    key = SERVICE_KEYS.get(name)
    if key is None:
        raise AdminError(404, f"unknown service {name!r}")
    return key


async def get_service(app: App, body: dict[str, Any], name: str) -> dict[str, Any]:
    key = _service(name)
    on = bool(config_edit.get_value(app.config, key))
    running = app.services is not None and name in app.services.running
    https = app.services is not None and "https" in app.services.running
    if name == "iroh":  # with a trusted certificate it is served on HTTPS, not by a listener
        running = running or (on and https and on_https(app.config))
    elif name in ("webimap", "websmtp"):  # routes of the HTTPS listener, checked per request
        running = on and https and app.config.webimap.enabled
    return {"status": "enabled" if on else "disabled", "running": running}


async def set_service(app: App, body: dict[str, Any], name: str) -> dict[str, Any]:
    key = _service(name)
    result = await change(app, {key: action(body, "enable", "disable") == "enable"})
    return await get_service(app, {}, name) | result


async def registration(app: App, body: dict[str, Any]) -> dict[str, Any]:
    return {"status": "open" if app.config.accounts.registration_open else "closed"}


async def set_registration(app: App, body: dict[str, Any]) -> dict[str, Any]:
    result = await change(
        app, {"accounts.registration_open": action(body, "open", "close") == "open"}
    )
    return await registration(app, {}) | result


async def jit(app: App, body: dict[str, Any]) -> dict[str, Any]:
    return {"status": "enabled" if app.config.accounts.jit else "disabled"}


async def set_jit(app: App, body: dict[str, Any]) -> dict[str, Any]:
    result = await change(app, {"accounts.jit": action(body, "enable", "disable") == "enable"})
    return await jit(app, {}) | result


async def federation(app: App, body: dict[str, Any]) -> dict[str, Any]:
    fed = app.config.federation
    return {"enabled": fed.enabled, "policy": fed.policy}


async def set_federation(app: App, body: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise AdminError(400, "enabled must be true or false")
        changes["federation.enabled"] = body["enabled"]
    if "policy" in body:
        changes["federation.policy"] = body["policy"]
    if not changes:
        raise AdminError(400, "enabled or policy is required")
    result = await change(app, changes)
    return await federation(app, {}) | result


async def rules(app: App, body: dict[str, Any]) -> dict[str, Any]:
    fed = app.config.federation
    return {"policy": fed.policy, "domains": list(fed.policy_domains)}


async def add_rule(app: App, body: dict[str, Any]) -> dict[str, Any]:
    domain = require_str(body, "domain").lower()
    domains = list(app.config.federation.policy_domains)
    if domain in domains:
        raise AdminError(409, f"{domain} is already listed")
    result = await change(app, {"federation.policy_domains": [*domains, domain]})
    return await rules(app, {}) | result


async def delete_rule(app: App, body: dict[str, Any]) -> dict[str, Any]:
    domain = require_str(body, "domain").lower()
    domains = list(app.config.federation.policy_domains)
    if domain not in domains:
        raise AdminError(404, f"{domain} is not listed")
    domains.remove(domain)
    result = await change(app, {"federation.policy_domains": domains})
    return await rules(app, {}) | result


async def servers(app: App, body: dict[str, Any]) -> dict[str, Any]:
    peers = app.metrics.peers
    return {domain: stats.as_dict() for domain, stats in sorted(peers.items())}


async def reload(app: App, body: dict[str, Any]) -> dict[str, Any]:
    return await app.reload()
