"""The context an operation runs in: one transaction on one pooled connection.

Like the embedded Planner it carries "now", the config and the change events; the events are
sent to the other nodes with pg_notify inside the transaction (so they go out exactly when it
commits) and handed to this node's watchers by the store after the commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..rules import canonical_name, day_number
from ..types import Mailbox, MailboxChange, MessageMeta, NoSuchAccount, NoSuchMailbox

CHANNEL = "relay_mailbox"
MAX_PAYLOAD = 7900  # PostgreSQL refuses notification payloads of 8000 bytes and more


MAILBOX_COLUMNS = "id, addr, name, uidvalidity, uidnext, modseq, bytes, subscribed, special_use"


@dataclass
class Tx:
    conn: psycopg.Connection
    now: float
    config: Any
    node: str
    events: list[tuple[str, MailboxChange]] = field(default_factory=list)

    def execute(self, query: Any, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        return self.conn.execute(query, params)

    def one(self, query: Any, params: Sequence[Any] | None = None) -> Any:
        return self.conn.execute(query, params).fetchone()

    def today(self) -> int:
        return day_number(self.now)

    @contextmanager
    def part(self) -> Iterator[None]:
        """A part that may fail alone (one recipient of a delivery): a savepoint, and the
        events it added go with it."""
        mark = len(self.events)
        try:
            with self.conn.transaction():
                yield
        except BaseException:
            del self.events[mark:]
            raise

    def event(
        self,
        addr: str,
        mailbox: str,
        kind: str,
        uids: Sequence[int],
        added: tuple[MessageMeta, ...] = (),
        header: bytes = b"",
    ) -> None:
        change = MailboxChange(mailbox, kind, tuple(uids), added, header)  # type: ignore[arg-type]
        self.events.append((addr, change))

    def send_events(self) -> None:
        """pg_notify every event (the last step of an operation: delivered at commit)."""
        for addr, change in self.events:
            payload = json.dumps(
                {
                    "n": self.node,
                    "a": addr,
                    "m": change.mailbox,
                    "k": change.kind,
                    "u": list(change.uids),
                }
            )
            if len(payload.encode()) > MAX_PAYLOAD:  # too many uids: re-read instead
                payload = json.dumps({"n": self.node, "a": addr, "m": "", "k": "resync", "u": []})
            self.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

    # -- lookups many operations use ---------------------------------------------------------

    def lock_accounts(self, addrs: Sequence[str]) -> set[str]:
        """Lock the accounts' rows (sorted, so two operations never wait on each other in a
        circle): every change to an account's mail is made under its lock, which keeps uids,
        modseqs and the quota arithmetic right between nodes. Returns those that exist."""
        rows = self.execute(
            "SELECT addr FROM accounts WHERE addr = ANY(%s) ORDER BY addr FOR UPDATE",
            (sorted(set(addrs)),),
        )
        return {r[0] for r in rows}

    def require_account(self, addr: str) -> None:
        if not self.lock_accounts([addr]):
            raise NoSuchAccount(addr)

    def find_mailbox(self, addr: str, name: str) -> Mailbox | None:
        row = self.one(
            f"SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE addr=%s AND name=%s",
            (addr, canonical_name(name)),
        )
        return Mailbox(*row) if row else None

    def mailbox(self, addr: str, name: str) -> Mailbox:
        """The mailbox of a locked account."""
        mbx = self.find_mailbox(addr, name)
        if mbx is None:
            raise NoSuchMailbox(f"no such mailbox: {canonical_name(name)}")
        return mbx

    def account_usage(self, addr: str) -> int:
        row = self.one("SELECT COALESCE(SUM(bytes), 0) FROM mailboxes WHERE addr=%s", (addr,))
        return int(row[0])

    def next_counter(self, name: str, at_least: int) -> int:
        """A strictly increasing value (uidvalidity: time-based, but never repeated)."""
        row = self.one(
            "INSERT INTO counters(name, value) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE"
            " SET value = GREATEST(counters.value + 1, EXCLUDED.value) RETURNING value",
            (name, at_least),
        )
        return int(row[0])
