"""Push notification items: recorded in the delivery's own batch, removed once sent.

An item is (id, account, token, created); the notifier (relay/outbound/push.py) holds the retry
state in memory, so only the items themselves are durable: a restart sends every pending item
again from its first attempt, and the deadline counts from `created`.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable

from .planner import Planner
from .types import Delivery, PushItem

MAX_PENDING = 10_000  # beyond this the oldest items are dropped: a dead proxy cannot grow the store


def record(p: Planner, delivery: Delivery, delivered: list[str]) -> list[PushItem]:
    """One item per live token of each recipient who did not send the message."""
    if delivery.push_tokens is None:
        return []
    key, live_tokens = delivery.push_tokens
    sender = delivery.sender.lower()
    now = int(p.now)
    items = []
    for addr in delivered:
        if addr == sender:
            continue  # the owner's own message (another device of theirs sent it)
        row = p.conn.execute(
            "SELECT value FROM metadata WHERE addr=? AND key=?", (addr, key)
        ).fetchone()
        items += [
            PushItem(secrets.token_hex(8), addr, token, now)
            for token in live_tokens(row[0] if row else None)
        ]
    if items:
        p.emit({"t": "push_add", "c": now, "i": [[i.id, i.addr, i.token] for i in items]})
        _drop_oldest_beyond_cap(p)
    return items


def _drop_oldest_beyond_cap(p: Planner) -> None:
    (count,) = p.conn.execute("SELECT COUNT(*) FROM push").fetchone()
    if count > MAX_PENDING:
        oldest = p.conn.execute(
            "SELECT id FROM push ORDER BY created, id LIMIT ?", (count - MAX_PENDING,)
        ).fetchall()
        p.emit({"t": "push_del", "i": [pid for (pid,) in oldest]})


def remove(p: Planner, ids: Iterable[str]) -> None:
    ids = list(ids)
    if ids:
        p.emit({"t": "push_del", "i": ids})


def pending(conn: sqlite3.Connection) -> list[PushItem]:
    rows = conn.execute("SELECT id, addr, token, created FROM push ORDER BY created, id")
    return [PushItem(*row) for row in rows.fetchall()]
