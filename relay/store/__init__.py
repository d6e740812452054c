"""The message store: append-only segment log for bodies, SQLite index, group commit
(embedded), or a PostgreSQL database shared by several nodes (relay/store/postgres).

Contract: the MailStore Protocol in relay/store/api.py (Store is the embedded implementation).
Everything callers need is exported here.
"""

from .api import MailStore
from .backend import open_store
from .store import Store
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
