"""The one method table of the admin socket and of `POST /api/admin`.

An operation is (HTTP-like method, madmail's resource name, handler). A resource ending in "/*"
takes a name (`/admin/settings/<name>`). `name` is the admin socket's method for hwctl and the
CLI; `local_only` operations (identity backup, factory reset, onboarding links for the display)
exist on the socket only: they hand out keys and passwords, and the socket is reachable only by
root and the relay's own user.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relay.core.admin import accounts, local, records, settings, status, update
from relay.core.admin.errors import AdminError

if TYPE_CHECKING:
    from relay.app import App

Handler = Callable[..., Awaitable[Any]]  # (app, body) or (app, body, name) -> JSON-able


@dataclass(frozen=True)
class Op:
    method: str
    resource: str
    handler: Handler
    name: str = ""  # the admin socket method
    local_only: bool = False


async def _status(app: App, body: dict[str, Any]) -> Any:
    return await status.status(app)


async def _storage(app: App, body: dict[str, Any]) -> Any:
    return await status.storage(app)


async def _overview(app: App, body: dict[str, Any]) -> Any:
    return {
        "status": await status.status(app),
        "storage": await status.storage(app),
        "registration": await settings.registration(app, body),
        "jit": await settings.jit(app, body),
        "services": {
            name: await settings.get_service(app, body, name) for name in settings.SERVICE_KEYS
        },
        "federation": await settings.federation(app, body),
        "settings": await settings.all_settings(app, body),
    }


async def _new_onboarding(app: App, body: dict[str, Any]) -> Any:
    return local.new_onboarding(app)


async def _factory_reset(app: App, body: dict[str, Any]) -> Any:
    return local.factory_reset(app)


async def _identity_export(app: App, body: dict[str, Any]) -> Any:
    return await local.identity_export(app)


OPS = [
    Op("GET", "/admin/status", _status, name="status"),
    Op("GET", "/admin/overview", _overview, name="overview"),
    Op("GET", "/admin/storage", _storage, name="storage"),
    Op("POST", "/admin/reload", settings.reload, name="reload"),
    Op("GET", "/admin/registration", settings.registration),
    Op("POST", "/admin/registration", settings.set_registration),
    Op("GET", "/admin/registration/jit", settings.jit),
    Op("POST", "/admin/registration/jit", settings.set_jit),
    Op("GET", "/admin/services/*", settings.get_service),
    Op("POST", "/admin/services/*", settings.set_service),
    Op("GET", "/admin/settings", settings.all_settings),
    Op("GET", "/admin/settings/federation", settings.federation),
    Op("POST", "/admin/settings/federation", settings.set_federation),
    Op("GET", "/admin/settings/*", settings.get_setting),
    Op("POST", "/admin/settings/*", settings.set_setting),
    Op("GET", "/admin/federation/rules", settings.rules),
    Op("POST", "/admin/federation/rules", settings.add_rule),
    Op("DELETE", "/admin/federation/rules", settings.delete_rule),
    Op("GET", "/admin/federation/servers", settings.servers),
    Op("GET", "/admin/accounts", accounts.list_accounts),
    Op("DELETE", "/admin/accounts", accounts.delete_account),
    Op("GET", "/admin/blocklist", accounts.blocklist),
    Op("POST", "/admin/blocklist", accounts.block),
    Op("DELETE", "/admin/blocklist", accounts.unblock),
    Op("GET", "/admin/quota", accounts.quota),
    Op("POST", "/admin/queue", accounts.queue, name="queue"),
    Op("GET", "/admin/dns", records.dns),
    Op("GET", "/admin/dkim", records.dkim_key),
    Op("POST", "/admin/onboarding", _new_onboarding, name="new_onboarding", local_only=True),
    Op("POST", "/admin/factory-reset", _factory_reset, name="factory_reset", local_only=True),
    Op("GET", "/admin/identity", _identity_export, name="identity_export", local_only=True),
    Op("POST", "/admin/identity", local.identity_import, name="identity_import", local_only=True),
    Op("GET", "/admin/update", update.update_status, name="update_status"),
    Op("POST", "/admin/update", update.update_install, name="update_install", local_only=True),
]
BY_NAME = {op.name: op for op in OPS if op.name}


def find(method: str, resource: str, *, local: bool) -> tuple[Op, list[str]]:
    """The operation for (method, resource) and the name part of a "/*" resource."""
    resource = "/" + resource.strip("/")
    known = False
    for op in OPS:
        if op.local_only and not local:
            continue
        args = _match(op.resource, resource)
        if args is None:
            continue
        known = True
        if op.method == method:
            return op, args
    if known:
        raise AdminError(405, f"{method} is not allowed on {resource}")
    raise AdminError(404, f"unknown resource {resource}")


def _match(pattern: str, resource: str) -> list[str] | None:
    if pattern.endswith("/*"):
        base = pattern[:-1]
        rest = resource[len(base) :]
        if resource.startswith(base) and rest and "/" not in rest:
            return [rest]
        return None
    return [] if pattern == resource else None


async def call(app: App, op: Op, args: list[str], body: Any) -> Any:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise AdminError(400, "body must be a JSON object")
    return await op.handler(app, body, *args)
