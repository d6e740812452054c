"""Change events from the other nodes: one LISTEN connection per node, driven by trio.

The connection is autocommit and never used for queries. trio waits until its socket is
readable, then psycopg's libpq layer reads what arrived (consume_input) and hands over the
notifications (notifies); no thread is involved. Each notification carries one change
(tx.send_events); the node's own ones are skipped, since the writing node publishes locally at
once. Notifications sent while the connection is down are lost, so after every reconnect all
local watchers are told to re-read ("resync").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import trio

from ..notify import Notifier
from ..types import MailboxChange
from .pool import connect
from .tx import CHANNEL

RECONNECT_MIN = 0.1
RECONNECT_MAX = 10.0
KINDS = ("exists", "expunge", "flags", "resync")
KICK = "kick"  # not a mailbox change: look at the outbound queue now (relay/store/postgres/queue)


def parse(payload: str, node: str) -> tuple[str, MailboxChange] | None:
    """(addr, change) of a notification from another node; None for our own or garbage."""
    try:
        data = json.loads(payload)
        if data["n"] == node or data["k"] not in KINDS:
            return None
        return data["a"], MailboxChange(data["m"], data["k"], tuple(int(u) for u in data["u"]))
    except (ValueError, KeyError, TypeError):
        return None


def is_kick(payload: str, node: str) -> bool:
    """Whether a notification is another node's queue kick."""
    try:
        data = json.loads(payload)
        return data["k"] == KICK and data["n"] != node
    except (ValueError, KeyError, TypeError):
        return False


class Listener:
    def __init__(self, dsn: str, node: str, notifier: Notifier, log: Any) -> None:
        self.dsn = dsn
        self.node = node
        self.notifier = notifier
        self.log = log
        self.connected = trio.Event()  # set while listening (tests wait for it)
        self.on_kick: Callable[[], None] = lambda: None  # another node's queue kick
        self.reconnects = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        delay = RECONNECT_MIN
        started = False
        while True:
            try:
                conn = await trio.to_thread.run_sync(self._open)
            except psycopg.Error as e:
                if not started:
                    raise
                self.log.warning("store-listen-connect-failed", error=str(e), retry=delay)
                await trio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            delay = RECONNECT_MIN
            try:
                if started:
                    self.reconnects += 1
                    self.notifier.wake_all()  # what happened meanwhile was not heard
                else:
                    started = True
                    task_status.started()
                self.connected.set()
                await self._receive(conn)
            except psycopg.Error as e:
                self.log.warning("store-listen-lost", error=str(e))
            finally:
                self.connected = trio.Event()
                conn.close()

    def _open(self) -> psycopg.Connection:
        conn = connect(self.dsn, 30, autocommit=True)
        conn.execute(b"LISTEN " + CHANNEL.encode())
        return conn

    async def _receive(self, conn: psycopg.Connection) -> None:
        pgconn = conn.pgconn
        while True:
            await trio.lowlevel.wait_readable(pgconn.socket)
            pgconn.consume_input()  # raises on a lost connection
            if pgconn.status != psycopg.pq.ConnStatus.OK:
                raise psycopg.OperationalError("the LISTEN connection was closed")
            while (notify := pgconn.notifies()) is not None:
                payload = notify.extra.decode()
                if is_kick(payload, self.node):
                    self.on_kick()
                elif (found := parse(payload, self.node)) is not None:
                    self.notifier.publish(*found)
