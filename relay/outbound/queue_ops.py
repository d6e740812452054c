"""What `relay queue list|retry|delete` does, run inside the relay (admin socket) or on a
stopped relay's store; results are plain JSON-able data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from relay.store import NoSuchQueueEntry, QueueEntry

ACTIONS = ("list", "retry", "delete")


class QueueCommandError(Exception):
    pass


def entry_dict(entry: QueueEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "sender": entry.sender,
        "recipients": list(entry.recipients),
        "size": entry.size,
        "created": entry.created.isoformat(),
        "attempts": entry.attempts,
        "next_attempt": entry.next_attempt.isoformat(),
        "last_error": entry.last_error,
    }


async def queue_command(store: Any, params: dict[str, Any]) -> dict[str, Any]:
    """params: {"action": "list"|"retry"|"delete", "ids": [...]}; retry with no ids = all."""
    action = params.get("action")
    ids = [str(i) for i in params.get("ids") or []]
    if action not in ACTIONS:
        raise QueueCommandError(f"unknown queue action {action!r}")
    entries = await store.queue_list()
    if action == "list":
        return {"entries": [entry_dict(e) for e in entries]}
    known = {e.id for e in entries}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise QueueCommandError(f"no such queue entry: {', '.join(unknown)}")
    if action == "delete" and not ids:
        raise QueueCommandError("name the entries to delete")
    chosen = ids or sorted(known)
    now = datetime.now(UTC)
    changed = 0
    for qid in chosen:
        try:
            if action == "retry":
                await store.queue_update(qid, next_attempt=now)
            else:
                await store.queue_remove(qid)
        except NoSuchQueueEntry:
            continue  # delivered meanwhile
        changed += 1
    return {"changed": changed}


async def admin_queue(app: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The admin socket's "queue" method: as queue_command, and a retry starts at once."""
    from relay.outbound import kick

    result = await queue_command(app.store, params)
    if params.get("action") == "retry":
        kick(app)
        await app.store.queue_kick()  # and the other nodes' workers, sharing a database
    return result
