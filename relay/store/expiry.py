"""The expiry pass (chatmail-expire, in process), planned by the writer like any operation.

Which accounts and messages are due is decided by rules; this module only fetches the rows and
emits the deletions. Dropping the segments nothing points into any more is a separate step
(queries.drop_dead_segments) that runs between batches. `now` is the store's ExpiryClock
reading (relay/store/clock.py), not the planner's wall clock; stamps in its future (made while
the clock was ahead) are first set back to it, so they age from now on.
"""

from __future__ import annotations

from . import rules
from .clock import SLACK
from .ops_accounts import delete_account
from .ops_mail import expire_oldest, expunge_ids
from .planner import Planner
from .types import ExpiryResult


def expire(p: Planner, now: float) -> ExpiryResult:
    """One expiry pass; emits nothing (so nothing is written) when nothing is due."""
    result = ExpiryResult(clamped=_clamp_future_stamps(p, now))
    cutoffs = rules.expiry_cutoffs(now, p.config.retention)
    for addr, login_day in p.conn.execute("SELECT addr, login_day FROM accounts").fetchall():
        if rules.account_inactive(cutoffs, login_day):
            delete_account(p, addr)
            result.accounts += 1
    # Only messages older than the later cutoff can be due: SQL narrows, the rules decide.
    candidates = p.conn.execute(
        "SELECT b.addr, m.mailbox, m.uid, m.size, m.date, m.flags FROM messages m"
        " JOIN mailboxes b ON b.id = m.mailbox WHERE m.date < ? ORDER BY m.mailbox, m.uid",
        (cutoffs.candidates_before,),
    ).fetchall()
    by_mailbox = rules.due_by_mailbox(cutoffs, candidates)
    for (addr, mailbox_id), uids in by_mailbox.items():
        expunge_ids(p, addr, mailbox_id, uids)
        result.messages += len(uids)
    target = rules.quota_target(p.config.limits.max_mailbox_size)
    for (addr,) in p.conn.execute(
        "SELECT addr FROM mailboxes GROUP BY addr HAVING SUM(bytes) > ?", (target,)
    ).fetchall():
        result.messages += expire_oldest(p, addr, target)
    return result


def _clamp_future_stamps(p: Planner, now: float) -> int:
    """Arrival dates and login days ahead of `now` (beyond SLACK) become `now`."""
    clamped = 0
    rows = p.conn.execute(
        "SELECT mailbox, uid FROM messages WHERE date > ? ORDER BY mailbox, uid", (now + SLACK,)
    ).fetchall()
    by_mailbox: dict[int, list[int]] = {}
    for mailbox_id, uid in rows:
        by_mailbox.setdefault(mailbox_id, []).append(uid)
    for mailbox_id, uids in by_mailbox.items():
        p.emit({"t": "redate", "m": mailbox_id, "u": uids, "d": int(now)})
        clamped += len(uids)
    today = rules.day_number(now)
    for (addr,) in p.conn.execute(
        "SELECT addr FROM accounts WHERE login_day > ?", (today + 1,)
    ).fetchall():
        p.emit({"t": "login", "a": addr, "d": today})
        clamped += 1
    return clamped
