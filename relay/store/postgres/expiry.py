"""The expiry pass on PostgreSQL: the rules of relay/store/rules.py, as the embedded pass
(relay/store/expiry.py) applies them. Only the expiry leader among the nodes runs it
(leader.py)."""

from __future__ import annotations

from .. import rules
from ..clock import SLACK
from ..types import ExpiryResult
from .accounts import delete_account
from .mail import expire_oldest, expunge_ids
from .tx import Tx


def expire(tx: Tx, now: float) -> ExpiryResult:
    result = ExpiryResult(clamped=_clamp_future_stamps(tx, now))
    cutoffs = rules.expiry_cutoffs(now, tx.config.retention)
    for addr, login_day in tx.execute("SELECT addr, login_day FROM accounts").fetchall():
        if rules.account_inactive(cutoffs, login_day):
            delete_account(tx, addr)
            result.accounts += 1
    candidates = tx.execute(
        "SELECT b.addr, m.mailbox, m.uid, m.size, m.date, m.flags FROM messages m"
        " JOIN mailboxes b ON b.id = m.mailbox WHERE m.date < %s ORDER BY m.mailbox, m.uid",
        (cutoffs.candidates_before,),
    ).fetchall()
    by_mailbox = rules.due_by_mailbox(cutoffs, candidates)
    tx.lock_accounts([addr for addr, _ in by_mailbox])  # all at once, in order: no deadlock
    for (addr, mailbox_id), uids in by_mailbox.items():
        expunge_ids(tx, addr, mailbox_id, uids)
        result.messages += len(uids)
    target = rules.quota_target(tx.config.limits.max_mailbox_size)
    for (addr,) in tx.execute(
        "SELECT addr FROM mailboxes GROUP BY addr HAVING SUM(bytes) > %s", (target,)
    ).fetchall():
        tx.lock_accounts([addr])
        result.messages += expire_oldest(tx, addr, target)
    tx.execute("DELETE FROM push_leases WHERE until < %s", (tx.now,))
    return result


def _clamp_future_stamps(tx: Tx, now: float) -> int:
    """Arrival dates and login days ahead of `now` (beyond SLACK) become `now`."""
    redated = tx.execute(
        "UPDATE messages SET date=%s WHERE date > %s RETURNING 1", (int(now), now + SLACK)
    ).fetchall()
    today = rules.day_number(now)
    relogged = tx.execute(
        "UPDATE accounts SET login_day=%s WHERE login_day > %s RETURNING 1", (today, today + 1)
    ).fetchall()
    return len(redated) + len(relogged)
