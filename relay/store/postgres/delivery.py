"""Delivery of one incoming message in ONE transaction: local copies, the queue entry for the
remote recipients, the report about failed local recipients and the push items (see
relay/store/ops_delivery.py, whose rules this follows). A refused recipient (no account,
quota) is rolled back alone to a savepoint; any other failure rolls back everything."""

from __future__ import annotations

from .. import rules
from ..ops_delivery import REFUSALS
from ..ops_push import item_id, token_key
from ..types import Delivery, DeliveryOutcome, NoSuchAccount, PushItem, ReportFate
from . import queue
from .mail import make_room, store_copies
from .tx import Tx


def deliver(tx: Tx, delivery: Delivery) -> DeliveryOutcome:
    out = DeliveryOutcome()
    data = delivery.local_data
    local = list(dict.fromkeys(r.lower() for r in delivery.local))
    sender = delivery.sender.lower()
    tx.lock_accounts([*local, sender] if delivery.sender_is_local else local)
    for addr in local:
        try:
            _take(tx, addr, len(data))
        except REFUSALS as e:
            out.failed[addr] = e
        else:
            out.delivered.append(addr)
    if out.delivered:
        notify = _tokens_to_notify(tx, delivery, out.delivered)
        keys = {a: " ".join(token_key(t) for t in tokens) for a, tokens in notify.items()}
        placed = store_copies(tx, out.delivered, data, keys)
        out.push = [
            PushItem(item_id(*placed[addr], token), addr, token, int(tx.now))
            for addr, tokens in notify.items()
            for token in tokens
        ]
        queue.lease_push_items(tx, [item.id for item in out.push])  # this node sends them
    if delivery.remote:
        out.queue_id = queue.enqueue(tx, delivery.sender, delivery.remote, delivery.remote_data)
        out.queued = list(delivery.remote)
    if out.failed and (out.delivered or out.queued) and delivery.sender and delivery.report:
        # Never for a null sender: a report about a report could loop between relays.
        report = delivery.report(dict(out.failed))
        if report is not None:
            out.report = _send_report(tx, delivery, report.data)
    return out


def _take(tx: Tx, addr: str, size: int) -> None:
    with tx.part():
        if tx.find_mailbox(addr, "INBOX") is None:
            raise NoSuchAccount(addr)
        make_room(tx, addr, size)


def _tokens_to_notify(tx: Tx, delivery: Delivery, delivered: list[str]) -> dict[str, list[str]]:
    def metadata(addr: str, key: str) -> str | None:
        row = tx.one("SELECT value FROM metadata WHERE addr=%s AND key=%s", (addr, key))
        return row[0] if row else None

    return rules.tokens_to_notify(delivery.sender, delivered, delivery.push_tokens, metadata)


def _send_report(tx: Tx, delivery: Delivery, report: bytes) -> ReportFate:
    if not delivery.sender_is_local:
        queue.enqueue(tx, "", [delivery.sender], report)
        return "queued"
    sender = delivery.sender.lower()
    try:
        _take(tx, sender, len(report))
    except REFUSALS:
        return "dropped"
    store_copies(tx, [sender], report)
    return "delivered"
