"""Files every node of a cluster must hold alike, kept in the shared_files table.

A node generates its secrets (the DKIM key, the TURN secret, the Shadowsocks password, the admin
token, the TLS certificate and key, the ACME account) into its data dir on the first start; with
several nodes behind one DNS name they must be the same everywhere. sync() makes the
database the authority: the first node to offer a file wins (INSERT ... ON CONFLICT DO NOTHING),
every node then writes the winner into its own data dir (atomically, mode 0600).

Names are paths relative to the data dir ("turn-secret", "dkim/<selector>.private").
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import psycopg

from relay.durable import write_atomically


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def sync_one(conn: psycopg.Connection, name: str, path: Path) -> bool:
    """Make `path` hold the database's copy of `name`, offering the local one when the database
    has none; returns whether the local file was (re)written. A missing local file with no
    copy in the database is left missing."""
    row = conn.execute("SELECT content FROM shared_files WHERE name = %s", (name,)).fetchone()
    if row is None:
        local = _read(path)
        if local is None:
            return False
        conn.execute(
            "INSERT INTO shared_files(name, content) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (name, local),
        )
        row = conn.execute("SELECT content FROM shared_files WHERE name = %s", (name,)).fetchone()
        assert row is not None
    winner = bytes(row[0])
    if _read(path) == winner:
        return False
    write_atomically(path, winner, mode=0o600)
    return True


def fetch(conn: psycopg.Connection, name: str) -> bytes | None:
    row = conn.execute("SELECT content FROM shared_files WHERE name = %s", (name,)).fetchone()
    return None if row is None else bytes(row[0])


def put(conn: psycopg.Connection, name: str, content: bytes) -> None:
    """Store `content` as `name`, replacing what was there (the ACME leader after a renewal)."""
    conn.execute(
        "INSERT INTO shared_files(name, content) VALUES (%s, %s) ON CONFLICT (name)"
        " DO UPDATE SET content = excluded.content, updated = now()",
        (name, content),
    )


def delete(conn: psycopg.Connection, name: str) -> None:
    conn.execute("DELETE FROM shared_files WHERE name = %s", (name,))


async def sync(pool: Any, data_dir: Path, names: list[str]) -> list[str]:
    """sync_one for each name, each in its own transaction; the names rewritten locally."""
    changed = []
    for name in names:
        if await pool.run(sync_one, name, Path(data_dir) / name):
            changed.append(name)
    return changed


ACME_LOCK = 0x72656C6179 + 2  # advisory lock key of the ACME leader


class Leadership:
    """A session-level advisory lock on a connection of its own: held as long as that
    connection lives, so a node that dies or loses the database hands it on by itself.
    Its methods block: call them in a worker thread, one at a time."""

    def __init__(self, dsn: str, statement_timeout: float, key: int = ACME_LOCK) -> None:
        self.dsn = dsn
        self.statement_timeout = statement_timeout
        self.key = key
        self._conn: psycopg.Connection | None = None
        self._held = False

    def check(self) -> bool:
        """Whether this node leads, taking the lock when it is free."""
        from .pool import connect

        try:
            if self._conn is None or self._conn.closed:
                self._held = False
                self._conn = connect(self.dsn, self.statement_timeout, autocommit=True)
            if self._held:
                self._conn.execute("SELECT 1")  # still connected, so still holding it
            else:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                self._held = bool(row and row[0])
        except psycopg.Error:
            self.close()
            raise
        return self._held

    def close(self) -> None:
        conn, held, self._conn, self._held = self._conn, self._held, None, False
        if conn is None:
            return
        # Given back before the connection closes: the server drops a closed session's locks
        # only once its backend has exited, so another node asking at once could still be told
        # no (a stopping node hands over at once).
        if held and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        conn.close()
