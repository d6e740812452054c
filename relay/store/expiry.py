"""The expiry pass (chatmail-expire, in process), planned by the writer like any operation.

Which accounts and messages are due is decided by rules; this module only fetches the rows and
emits the deletions. Dropping the segments nothing points into any more is a separate step
(queries.drop_dead_segments) that runs between batches.
"""

from __future__ import annotations

from . import rules
from .ops_accounts import delete_account
from .ops_mail import expire_oldest, expunge_ids
from .planner import Planner
from .types import ExpiryResult


def expire(p: Planner) -> ExpiryResult:
    """One expiry pass; emits nothing (so nothing is written) when nothing is due."""
    cutoffs = rules.expiry_cutoffs(p.now, p.config.retention)
    result = ExpiryResult()
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
    by_mailbox: dict[tuple[str, int], list[int]] = {}
    for addr, mailbox_id, uid, size, date, flags in candidates:
        if rules.message_due(cutoffs, size, date, rules.decode_flags(flags)):
            by_mailbox.setdefault((addr, mailbox_id), []).append(uid)
    for (addr, mailbox_id), uids in by_mailbox.items():
        expunge_ids(p, addr, mailbox_id, uids)
        result.messages += len(uids)
    target = rules.quota_target(p.config.limits.max_mailbox_size)
    for (addr,) in p.conn.execute(
        "SELECT addr FROM mailboxes GROUP BY addr HAVING SUM(bytes) > ?", (target,)
    ).fetchall():
        result.messages += expire_oldest(p, addr, target)
    return result
