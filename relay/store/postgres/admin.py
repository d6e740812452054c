"""`relay db ...`: schema upgrades and the migration from an embedded store, run by the
operator (synchronously)."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg

from ..types import StoreError
from . import schema
from .migrate import MigrationError, migrate


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


def migrate_embedded(data_dir: Path, dsn: str) -> int:
    """Copy the embedded store of data_dir into the database; exit status 0, or 1."""
    try:
        copied = migrate(data_dir, dsn)
    except (psycopg.Error, schema.SchemaError, MigrationError, StoreError) as e:
        print(f"relay db migrate: {e}", file=sys.stderr)
        return 1
    what = ", ".join(f"{n} {name}" for name, n in sorted(copied.items()))
    print(f"copied {what or 'nothing'}")
    return 0
