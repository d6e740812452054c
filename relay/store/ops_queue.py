"""Outbound queue operations planned by the writer (see ops_mail)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from .planner import Planner
from .types import NoSuchQueueEntry


def enqueue(p: Planner, sender: str, recipients: Sequence[str], data: bytes) -> str:
    qid = secrets.token_hex(8)
    p.emit({"t": "q_add", "id": qid, "s": sender, "r": list(recipients), "c": int(p.now)}, data)
    return qid


def _queue_row(p: Planner, qid: str) -> tuple[str, int, int, str]:
    row = p.conn.execute(
        "SELECT recipients, attempts, next_attempt, last_error FROM queue WHERE id=?", (qid,)
    ).fetchone()
    if row is None:
        raise NoSuchQueueEntry(qid)
    return row


def queue_update(
    p: Planner, qid: str, attempts: int | None, next_attempt: int | None, last_error: str | None
) -> None:
    _, old_attempts, old_next, old_error = _queue_row(p, qid)
    p.emit(
        {
            "t": "q_upd",
            "id": qid,
            "n": old_attempts if attempts is None else attempts,
            "at": old_next if next_attempt is None else next_attempt,
            "e": old_error if last_error is None else last_error,
        }
    )


def queue_remove(p: Planner, qid: str, recipients: Sequence[str] | None) -> None:
    """Remove the entry, or only some recipients (the entry goes when none is left)."""
    current = _queue_row(p, qid)[0].split("\n")
    left = [] if recipients is None else [r for r in current if r not in set(recipients)]
    if left != current:
        p.emit({"t": "q_del", "id": qid, "r": left})
