"""The message store: append-only segment log for bodies, SQLite index, group commit.

Contract: see Store in relay/store/store.py. Everything callers need is exported here.
"""

from .store import Store, open_store
from .types import (
    LoginResult,
    MailboxChange,
    MailboxEntry,
    MailboxError,
    MailboxSnapshot,
    MessageMeta,
    NoSuchAccount,
    NoSuchMailbox,
    NoSuchMessage,
    NoSuchQueueEntry,
    QueueEntry,
    QuotaExceeded,
    StoreError,
)

__all__ = [
    "LoginResult",
    "MailboxChange",
    "MailboxEntry",
    "MailboxError",
    "MailboxSnapshot",
    "MessageMeta",
    "NoSuchAccount",
    "NoSuchMailbox",
    "NoSuchMessage",
    "NoSuchQueueEntry",
    "QueueEntry",
    "QuotaExceeded",
    "Store",
    "StoreError",
    "open_store",
]
