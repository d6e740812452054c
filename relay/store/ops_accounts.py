"""Account and metadata operations planned by the writer (see ops_mail)."""

from __future__ import annotations

from collections.abc import Callable

from .ops_mail import create_mailbox
from .planner import Planner
from .types import AccountCreation


def create_account(p: Planner, addr: str, pwhash: str) -> AccountCreation:
    """'created', or 'exists' when a concurrent first login won, or 'blocked'."""
    if p.conn.execute("SELECT 1 FROM blocked WHERE addr=?", (addr,)).fetchone():
        return "blocked"
    if p.conn.execute("SELECT 1 FROM accounts WHERE addr=?", (addr,)).fetchone():
        return "exists"
    p.require_space(0)
    p.emit({"t": "acct", "a": addr, "h": pwhash, "c": int(p.now), "d": p.today()})
    create_mailbox(p, addr, "INBOX")
    return "created"


def touch_login(p: Planner, addr: str) -> None:
    row = p.conn.execute("SELECT login_day FROM accounts WHERE addr=?", (addr,)).fetchone()
    if row and row[0] < p.today():
        p.emit({"t": "login", "a": addr, "d": p.today()})


def delete_account(p: Planner, addr: str) -> None:
    if p.conn.execute("SELECT 1 FROM accounts WHERE addr=?", (addr,)).fetchone():
        p.emit({"t": "acct_del", "a": addr})
        p.event(addr, "", "resync", ())


def block(p: Planner, addr: str) -> None:
    """Block an address: its account (if any) is removed and it can never be created again."""
    delete_account(p, addr)
    if not p.conn.execute("SELECT 1 FROM blocked WHERE addr=?", (addr,)).fetchone():
        p.emit({"t": "block", "a": addr})


def unblock(p: Planner, addr: str) -> None:
    """Let a blocked address be created again (at its next first login)."""
    if p.conn.execute("SELECT 1 FROM blocked WHERE addr=?", (addr,)).fetchone():
        p.emit({"t": "unblock", "a": addr})


def set_metadata(p: Planner, addr: str, key: str, value: str | None) -> None:
    update_metadata(p, addr, key, lambda _old: value)


def update_metadata(
    p: Planner, addr: str, key: str, change: Callable[[str | None], str | None]
) -> str | None:
    """Read-modify-write inside the writer: operations run one after the other and each sees
    the effect of the previous ones, so concurrent changes (two devices adding their push
    token) cannot overwrite each other. change(None) means the key is unset; returning None
    deletes it."""
    p.require_account(addr)
    row = p.conn.execute("SELECT value FROM metadata WHERE addr=? AND key=?", (addr, key))
    found = row.fetchone()
    old = found[0] if found else None
    new = change(old)
    if new != old:  # an unchanged value writes nothing
        p.emit({"t": "meta", "a": addr, "k": key, "v": new})
    return new
