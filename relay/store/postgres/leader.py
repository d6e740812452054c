"""Which node runs the expiry pass: the one holding a session advisory lock on a connection
of its own. The lock goes with that connection (the node stopped, or lost the database),
and the next node to ask takes it over."""

from __future__ import annotations

import psycopg

from .pool import connect

EXPIRY_LOCK = 0x72656C6179 + 1  # advisory lock key of the expiry leader ("relay" + 1)


class Leadership:
    def __init__(self, dsn: str, statement_timeout: float) -> None:
        self.dsn = dsn
        self.statement_timeout = statement_timeout
        self._conn: psycopg.Connection | None = None

    def check(self) -> bool:
        """Whether this node leads now, taking the lead if nobody holds it (blocking: run it
        in a thread)."""
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
                return True
            except psycopg.Error:
                self.close()
        conn = connect(self.dsn, self.statement_timeout, autocommit=True)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (EXPIRY_LOCK,)).fetchone()
        if row and row[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
