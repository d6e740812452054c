"""Accounts, the blocklist, quota and the mail store purges (/admin/accounts, /admin/blocklist,
/admin/quota, /admin/queue). Accounts are never created here: they come from first logins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relay.core.admin.errors import AdminError, action, require_str
from relay.outbound.queue_ops import QueueCommandError, admin_queue
from relay.store import NoSuchMailbox

if TYPE_CHECKING:
    from relay.app import App

PURGES = ("purge_user", "purge_all", "purge_read")


def address(app: App, body: dict[str, Any]) -> str:
    """The account a request names; a bare local part is taken as one of ours."""
    name = require_str(body, "username").lower()
    if "@" not in name:
        name = f"{name}@{app.config.address_domain}"
    if not app.config.is_local_address(name):
        raise AdminError(400, f"{name} is not an address of this relay")
    return name


async def list_accounts(app: App, body: dict[str, Any]) -> dict[str, Any]:
    accounts = await app.store.list_accounts()
    quota = app.config.limits.max_mailbox_size
    return {
        "total": len(accounts),
        "accounts": [
            {
                "username": a.addr,
                "created": a.created.isoformat(),
                "used_bytes": a.used_bytes,
                "max_bytes": quota,
            }
            for a in accounts
        ],
    }


async def delete_account(app: App, body: dict[str, Any]) -> dict[str, Any]:
    """As madmail: the login, all mail and a blocklist entry go, so the name is free again."""
    addr = address(app, body)
    existed = await app.store.account_exists(addr)
    await app.store.delete_account(addr)
    await app.store.unblock(addr)
    if not existed:
        raise AdminError(404, f"no account {addr}")
    app.log.info("admin-account-deleted", addr=app.log.redact(addr))
    return {"username": addr, "deleted": True}


async def blocklist(app: App, body: dict[str, Any]) -> dict[str, Any]:
    blocked = await app.store.blocked_addresses()
    return {"total": len(blocked), "blocked": [{"username": addr} for addr in blocked]}


async def block(app: App, body: dict[str, Any]) -> dict[str, Any]:
    """Blocks logins and registration of the address and removes its account and mail. A
    reason is accepted for madmail's clients but not kept: the relay stores no notes on users."""
    addr = address(app, body)
    await app.store.block(addr)
    app.log.info("admin-account-blocked", addr=app.log.redact(addr))
    return {"username": addr, "blocked": True}


async def unblock(app: App, body: dict[str, Any]) -> dict[str, Any]:
    addr = address(app, body)
    if not await app.store.is_blocked(addr):
        raise AdminError(404, f"{addr} is not blocked")
    await app.store.unblock(addr)
    return {"username": addr, "blocked": False}


async def quota(app: App, body: dict[str, Any]) -> dict[str, Any]:
    limit = app.config.limits.max_mailbox_size
    if not body.get("username"):
        return {"max_bytes": limit, "default": True}
    addr = address(app, body)
    if not await app.store.account_exists(addr):
        raise AdminError(404, f"no account {addr}")
    return {"username": addr, "used_bytes": await app.store.quota_usage(addr), "max_bytes": limit}


async def queue(app: App, body: dict[str, Any]) -> dict[str, Any]:
    """madmail's purges of stored mail, and our outbound queue's list, retry and delete."""
    what = action(body, *PURGES, "list", "retry", "delete")
    if what not in PURGES:
        try:
            return await admin_queue(app, body)
        except QueueCommandError as e:
            raise AdminError(400, str(e)) from None
    if what == "purge_user":
        targets = [address(app, body)]
    else:
        targets = [a.addr for a in await app.store.list_accounts()]
    removed = 0
    for addr in targets:
        removed += await _purge(app, addr, seen_only=what == "purge_read")
    app.log.info("admin-mail-purged", action=what, accounts=len(targets), messages=removed)
    return {"action": what, "accounts": len(targets), "messages": removed}


async def _purge(app: App, addr: str, *, seen_only: bool) -> int:
    store = app.store
    removed = 0
    for mailbox in await store.list_mailboxes(addr):
        try:
            snapshot = await store.snapshot(addr, mailbox.name)
        except NoSuchMailbox:
            continue  # deleted meanwhile
        uids = [m.uid for m in snapshot.messages if not seen_only or "\\Seen" in m.flags]
        if uids:
            removed += len(await store.expunge(addr, mailbox.name, uids))
    return removed
