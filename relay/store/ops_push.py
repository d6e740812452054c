"""Push notification items, kept in the rows of the messages they are about.

A message stored in an INBOX for someone who did not send it carries the keys of the device
tokens still to be notified (a short hash of each token, in its `push` column). They are
written with the message itself, in the same record and the same index page, so push costs
the flash no extra page per message; the notifier (relay/core/push.py) holds the retry state
in memory and clears a key once its token is done, in one write per second at most. After a
restart every key still set is sent again from its first attempt; the deadline counts from the
message's arrival. An expunged message takes its pending notifications with it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable

from . import rules
from .planner import Planner
from .types import Delivery, PushItem

LiveTokens = Callable[[str | None], list[str]]


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def item_id(mailbox_id: int, uid: int, token: str) -> str:
    return f"{mailbox_id}:{uid}:{token_key(token)}"


def tokens_to_notify(p: Planner, delivery: Delivery, delivered: list[str]) -> dict[str, list[str]]:
    """The live tokens of each recipient who did not send the message."""

    def metadata(addr: str, key: str) -> str | None:
        row = p.conn.execute(
            "SELECT value FROM metadata WHERE addr=? AND key=?", (addr, key)
        ).fetchone()
        return row[0] if row else None

    return rules.tokens_to_notify(delivery.sender, delivered, delivery.push_tokens, metadata)


def remove(p: Planner, ids: Iterable[str]) -> None:
    done = []
    for pid in ids:
        mailbox, uid, key = pid.split(":")
        done.append([int(mailbox), int(uid), key])
    if done:
        p.emit({"t": "push_del", "i": done})


def pending(conn: sqlite3.Connection, key: str, live_tokens: LiveTokens) -> list[PushItem]:
    """Every notification not yet done, with its token (gone tokens are skipped)."""
    items = []
    rows = conn.execute(
        "SELECT m.mailbox, m.uid, m.push, m.date, b.addr, md.value FROM messages m"
        " JOIN mailboxes b ON b.id = m.mailbox"
        " LEFT JOIN metadata md ON md.addr = b.addr AND md.key = ?"
        " WHERE m.push != '' ORDER BY m.date",
        (key,),
    )
    for mailbox, uid, keys, date, addr, raw in rows.fetchall():
        tokens = {token_key(t): t for t in live_tokens(raw)}
        for k in keys.split():
            if k in tokens:
                items.append(PushItem(f"{mailbox}:{uid}:{k}", addr, tokens[k], date))
    return items
