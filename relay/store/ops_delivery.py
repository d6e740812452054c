"""Delivery of one incoming message as ONE planned operation: local copies, the queue entry for
the remote recipients, and the report about failed local recipients.

Being one operation it shares one batch, so one fdatasync makes all of it durable at once, and
it is all or nothing: a refusal of one local recipient (no account, quota) is undone on its own
(Planner.part) and listed in the outcome, while any other failure (an I/O error, a bug, an
exception from the report builder) discards the whole operation and reaches the caller, who
has not answered the sender yet and can still say 451.
"""

from __future__ import annotations

from . import ops_push, ops_queue
from .ops_mail import make_room, store_copies
from .planner import Planner
from .types import Delivery, DeliveryOutcome, NoSuchAccount, PushItem, QuotaExceeded, ReportFate

REFUSALS = (NoSuchAccount, QuotaExceeded)  # what fails one recipient rather than the message


def plan(p: Planner, delivery: Delivery) -> DeliveryOutcome:
    out = DeliveryOutcome()
    data = delivery.local_data
    for addr in dict.fromkeys(r.lower() for r in delivery.local):
        try:
            _take(p, addr, len(data))
        except REFUSALS as e:
            out.failed[addr] = e
        else:
            out.delivered.append(addr)
    if out.delivered:
        notify = ops_push.tokens_to_notify(p, delivery, out.delivered)
        keys = {a: " ".join(ops_push.token_key(t) for t in tokens) for a, tokens in notify.items()}
        placed = store_copies(p, out.delivered, data, keys)
        out.push = [
            PushItem(ops_push.item_id(*placed[addr], token), addr, token, int(p.now))
            for addr, tokens in notify.items()
            for token in tokens
        ]
    if delivery.remote:
        # Through the module so a test can make this step fail and see nothing become durable.
        out.queue_id = ops_queue.enqueue(p, delivery.sender, delivery.remote, delivery.remote_data)
        out.queued = list(delivery.remote)
    if out.failed and (out.delivered or out.queued) and delivery.sender and delivery.report:
        # The sender gets its 250 for the others, so it must learn of the failures another
        # way. Never for a null sender: a report about a report could loop between relays.
        report = delivery.report(dict(out.failed))
        if report is not None:
            out.report = _send_report(p, delivery, report.data)
    return out


def _take(p: Planner, addr: str, size: int) -> None:
    """Check that addr can take size bytes, making room as the quota rules say; on refusal the
    expunges made for it are undone too."""
    with p.part():
        if p.find_mailbox(addr, "INBOX") is None:
            raise NoSuchAccount(addr)
        make_room(p, addr, size)


def _send_report(p: Planner, delivery: Delivery, report: bytes) -> ReportFate:
    if not delivery.sender_is_local:
        ops_queue.enqueue(p, "", [delivery.sender], report)
        return "queued"
    sender = delivery.sender.lower()
    try:
        _take(p, sender, len(report))
    except REFUSALS:
        return "dropped"  # nowhere to put it; the delivery to the others still stands
    store_copies(p, [sender], report)
    return "delivered"
