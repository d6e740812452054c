"""The message store: append-only segment log for bodies, SQLite index, group commit.

Contract: the MailStore Protocol in relay/store/api.py (Store is the embedded implementation).
Everything callers need is exported here.
"""

from .api import MailStore
from .store import Store, open_store
from .types import (
    AccountInfo,
    AuthRecord,
    Delivery,
    DeliveryOutcome,
    DeliveryReport,
    ExpiryResult,
    MailboxChange,
    MailboxEntry,
    MailboxError,
    MailboxSnapshot,
    MessageMeta,
    NoSuchAccount,
    NoSuchMailbox,
    NoSuchMessage,
    NoSuchQueueEntry,
    PushItem,
    QueueEntry,
    QuotaExceeded,
    StorageFull,
    StoreError,
)

__all__ = [
    "AccountInfo",
    "AuthRecord",
    "Delivery",
    "DeliveryOutcome",
    "DeliveryReport",
    "ExpiryResult",
    "MailStore",
    "MailboxChange",
    "MailboxEntry",
    "MailboxError",
    "MailboxSnapshot",
    "MessageMeta",
    "NoSuchAccount",
    "NoSuchMailbox",
    "NoSuchMessage",
    "NoSuchQueueEntry",
    "PushItem",
    "QueueEntry",
    "QuotaExceeded",
    "StorageFull",
    "Store",
    "StoreError",
    "open_store",
]
