"""`relay db ...`: schema upgrades, run by the operator (synchronously, no relay running)."""

from __future__ import annotations

import sys

import psycopg

from . import schema


def upgrade(dsn: str) -> int:
    """Bring the database to this relay's schema; exit status 0, or 1 with the reason."""
    try:
        with psycopg.connect(dsn) as conn:
            before = schema.current_version(conn)
            conn.rollback()
            applied = schema.upgrade(conn)
    except (psycopg.Error, schema.SchemaError) as e:
        print(f"relay db upgrade: {e}", file=sys.stderr)
        return 1
    if applied:
        print(f"schema upgraded from version {before} to {applied[-1]}")
    else:
        print(f"schema is at version {before}, nothing to do")
    return 0
