"""Account, blocklist and metadata operations on PostgreSQL (each in one transaction)."""

from __future__ import annotations

from collections.abc import Callable

from ..types import AccountCreation
from .mail import create_mailbox, drop_unused_bodies
from .tx import Tx


def create_account(tx: Tx, addr: str, pwhash: str) -> AccountCreation:
    """'created', or 'exists' when a concurrent first login (on any node) won, or 'blocked'."""
    tx.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (addr,))  # one creator per address
    if tx.one("SELECT 1 FROM blocked WHERE addr=%s", (addr,)):
        return "blocked"
    created = tx.one(
        "INSERT INTO accounts(addr, pwhash, created, login_day) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (addr) DO NOTHING RETURNING addr",
        (addr, pwhash, int(tx.now), tx.today()),
    )
    if created is None:
        return "exists"
    create_mailbox(tx, addr, "INBOX")
    return "created"


def touch_login(tx: Tx, addr: str) -> None:
    tx.execute(
        "UPDATE accounts SET login_day=%s WHERE addr=%s AND login_day < %s",
        (tx.today(), addr, tx.today()),
    )


def delete_account(tx: Tx, addr: str) -> None:
    if not tx.lock_accounts([addr]):
        return
    bodies = tx.execute(
        "SELECT DISTINCT m.body FROM messages m JOIN mailboxes b ON b.id = m.mailbox"
        " WHERE b.addr=%s",
        (addr,),
    ).fetchall()
    tx.execute("DELETE FROM accounts WHERE addr=%s", (addr,))  # cascades to its mail
    drop_unused_bodies(tx, (r[0] for r in bodies))
    tx.event(addr, "", "resync", ())


def block(tx: Tx, addr: str) -> None:
    delete_account(tx, addr)
    tx.execute("INSERT INTO blocked(addr) VALUES (%s) ON CONFLICT DO NOTHING", (addr,))


def unblock(tx: Tx, addr: str) -> None:
    tx.execute("DELETE FROM blocked WHERE addr=%s", (addr,))


def update_metadata(
    tx: Tx, addr: str, key: str, change: Callable[[str | None], str | None]
) -> str | None:
    """Read-modify-write under the account's lock: concurrent changes (two devices adding
    their push token, on two nodes) cannot overwrite each other. None deletes the key."""
    tx.require_account(addr)
    found = tx.one("SELECT value FROM metadata WHERE addr=%s AND key=%s", (addr, key))
    old = found[0] if found else None
    new = change(old)
    if new == old:
        return new
    if new is None:
        tx.execute("DELETE FROM metadata WHERE addr=%s AND key=%s", (addr, key))
    else:
        tx.execute(
            "INSERT INTO metadata(addr, key, value) VALUES (%s, %s, %s)"
            " ON CONFLICT (addr, key) DO UPDATE SET value = EXCLUDED.value",
            (addr, key, new),
        )
    return new
