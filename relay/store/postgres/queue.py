"""The outbound queue and the push items on PostgreSQL, shared by every node.

Several nodes scan the same queue; queue_claim() leases an entry to one of them for a while
(lease_until), so only that node sends it. Push items live in their messages' rows as in the
embedded store (ops_push); push_leases says which node is sending which item.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence

from ..ops_push import LiveTokens, token_key
from ..planner import to_datetime
from ..types import NoSuchQueueEntry, PushItem, QueueEntry
from .listener import KICK
from .mail import drop_unused_bodies, store_body
from .tx import CHANNEL, Tx

PUSH_LEASE = 6 * 3600.0  # longer than a notification is retried (relay/core/push.py DEADLINE)


def enqueue(tx: Tx, sender: str, recipients: Sequence[str], data: bytes) -> str:
    qid = secrets.token_hex(8)
    tx.execute(
        "INSERT INTO queue(id, sender, recipients, body, size, created, next_attempt)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            qid,
            sender,
            list(recipients),
            store_body(tx, data),
            len(data),
            int(tx.now),
            int(tx.now),
        ),
    )
    return qid


def queue_list(tx: Tx) -> list[QueueEntry]:
    rows = tx.execute(
        "SELECT id, sender, recipients, size, created, attempts, next_attempt, last_error"
        " FROM queue ORDER BY next_attempt, created, id"
    )
    return [
        QueueEntry(qid, sender, list(rcpts), size, to_datetime(c), n, to_datetime(at), err)
        for qid, sender, rcpts, size, c, n, at, err in rows.fetchall()
    ]


def queue_read(tx: Tx, qid: str) -> bytes:
    row = tx.one("SELECT b.data FROM queue q JOIN bodies b ON b.id = q.body WHERE q.id=%s", (qid,))
    if row is None:
        raise NoSuchQueueEntry(qid)
    return bytes(row[0])


def queue_update(
    tx: Tx, qid: str, attempts: int | None, next_attempt: int | None, last_error: str | None
) -> None:
    row = tx.one(
        "UPDATE queue SET attempts=COALESCE(%s, attempts),"
        " next_attempt=COALESCE(%s, next_attempt), last_error=COALESCE(%s, last_error),"
        " lease_until=0 WHERE id=%s RETURNING id",
        (attempts, next_attempt, last_error, qid),
    )
    if row is None:
        raise NoSuchQueueEntry(qid)


def queue_remove(tx: Tx, qid: str, recipients: Sequence[str] | None) -> None:
    """Remove the entry, or only some recipients (the entry goes when none is left)."""
    row = tx.one("SELECT recipients, body FROM queue WHERE id=%s FOR UPDATE", (qid,))
    if row is None:
        raise NoSuchQueueEntry(qid)
    current, body = list(row[0]), row[1]
    left = [] if recipients is None else [r for r in current if r not in set(recipients)]
    if left == current:
        return
    if left:
        tx.execute("UPDATE queue SET recipients=%s WHERE id=%s", (left, qid))
    else:
        tx.execute("DELETE FROM queue WHERE id=%s", (qid,))
        drop_unused_bodies(tx, [body])


def queue_claim(tx: Tx, qid: str, seconds: float) -> bool:
    """Lease the entry to this node for `seconds` unless another node holds a lease on it
    (queue_update, the end of an attempt, gives the lease up)."""
    row = tx.one(
        "UPDATE queue SET lease_until=%s, lease_node=%s WHERE id=%s"
        " AND (lease_until < %s OR lease_node = %s) RETURNING id",
        (tx.now + seconds, tx.node, qid, tx.now, tx.node),
    )
    return row is not None


# -- push items ---------------------------------------------------------------------------


def lease_push_items(tx: Tx, ids: Iterable[str]) -> list[str]:
    """Lease the items to this node; returns those it got (no other node holds them)."""
    wanted = list(ids)
    if not wanted:
        return []
    rows = tx.execute(
        "INSERT INTO push_leases(id, until, node) SELECT unnest(%s::text[]), %s, %s"
        " ON CONFLICT (id) DO UPDATE SET until = EXCLUDED.until, node = EXCLUDED.node"
        " WHERE push_leases.until < %s OR push_leases.node = EXCLUDED.node RETURNING id",
        (wanted, tx.now + PUSH_LEASE, tx.node, tx.now),
    )
    return [r[0] for r in rows.fetchall()]


def push_pending(tx: Tx, key: str, live_tokens: LiveTokens) -> list[PushItem]:
    """Every notification not yet done and not being sent by another node (now leased to
    this one), with its token; gone tokens are skipped."""
    items = {}
    rows = tx.execute(
        "SELECT m.mailbox, m.uid, m.push, m.date, b.addr, md.value FROM messages m"
        " JOIN mailboxes b ON b.id = m.mailbox"
        " LEFT JOIN metadata md ON md.addr = b.addr AND md.key = %s"
        " WHERE m.push <> '' ORDER BY m.date",
        (key,),
    )
    for mailbox, uid, keys, date, addr, raw in rows.fetchall():
        tokens = {token_key(t): t for t in live_tokens(raw)}
        for k in keys.split():
            if k in tokens:
                pid = f"{mailbox}:{uid}:{k}"
                items[pid] = PushItem(pid, addr, tokens[k], date)
    leased = set(lease_push_items(tx, items))
    return [item for pid, item in items.items() if pid in leased]


def push_done(tx: Tx, ids: Sequence[str]) -> None:
    for pid in ids:
        mailbox, uid, key = pid.split(":")
        row = tx.one(
            "SELECT push FROM messages WHERE mailbox=%s AND uid=%s FOR UPDATE",
            (int(mailbox), int(uid)),
        )
        if row is not None:  # else expunged meanwhile
            left = " ".join(k for k in row[0].split() if k != key)
            tx.execute(
                "UPDATE messages SET push=%s WHERE mailbox=%s AND uid=%s",
                (left, int(mailbox), int(uid)),
            )
    tx.execute("DELETE FROM push_leases WHERE id = ANY(%s)", (list(ids),))


def kick(tx: Tx) -> None:
    """The other nodes' listeners hear it at commit and kick their outbound workers."""
    tx.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps({"n": tx.node, "k": KICK})))
