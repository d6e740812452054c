"""The database schema as numbered migrations; schema_version says how many are applied.

`relay db upgrade` applies the missing ones (upgrade()); the store refuses a database that is
not at the version it knows (check()), so a node never runs against tables it does not expect.
Never edit a migration once released: add the next one.
"""

from __future__ import annotations

import psycopg

MIGRATIONS: tuple[str, ...] = (
    # 1: what the embedded store keeps, in tables. A body is stored once: the copies a
    # delivery, COPY or MOVE make point at the same row, which goes with its last reference.
    """
    CREATE TABLE accounts(
        addr text PRIMARY KEY, pwhash text NOT NULL, created bigint NOT NULL,
        login_day integer NOT NULL);
    CREATE TABLE blocked(addr text PRIMARY KEY);
    CREATE TABLE counters(name text PRIMARY KEY, value bigint NOT NULL);
    CREATE TABLE mailboxes(
        id bigserial PRIMARY KEY, addr text NOT NULL REFERENCES accounts ON DELETE CASCADE,
        name text NOT NULL, uidvalidity bigint NOT NULL, uidnext bigint NOT NULL DEFAULT 1,
        modseq bigint NOT NULL DEFAULT 1, bytes bigint NOT NULL DEFAULT 0,
        subscribed boolean NOT NULL, special_use text, UNIQUE(addr, name));
    CREATE TABLE bodies(id bigserial PRIMARY KEY, data bytea NOT NULL);
    CREATE TABLE messages(
        mailbox bigint NOT NULL REFERENCES mailboxes ON DELETE CASCADE, uid bigint NOT NULL,
        body bigint NOT NULL REFERENCES bodies, size bigint NOT NULL, date bigint NOT NULL,
        flags text NOT NULL, modseq bigint NOT NULL, push text NOT NULL DEFAULT '',
        PRIMARY KEY(mailbox, uid));
    CREATE INDEX messages_by_body ON messages(body);
    CREATE INDEX messages_by_date ON messages(date);
    CREATE INDEX messages_with_push ON messages(date) WHERE push <> '';
    CREATE TABLE metadata(
        addr text NOT NULL REFERENCES accounts ON DELETE CASCADE, key text NOT NULL,
        value text NOT NULL, PRIMARY KEY(addr, key));
    CREATE TABLE queue(
        id text PRIMARY KEY, sender text NOT NULL, recipients text[] NOT NULL,
        body bigint NOT NULL REFERENCES bodies, size bigint NOT NULL, created bigint NOT NULL,
        attempts integer NOT NULL DEFAULT 0, next_attempt bigint NOT NULL,
        last_error text NOT NULL DEFAULT '', lease_until double precision NOT NULL DEFAULT 0,
        lease_node text NOT NULL DEFAULT '');
    CREATE INDEX queue_by_body ON queue(body);
    CREATE TABLE push_leases(
        id text PRIMARY KEY, until double precision NOT NULL, node text NOT NULL);
    """,
    # 2: files every node must hold alike (secrets, keys, the TLS certificate), by their path
    # relative to the data dir (relay/store/postgres/shared_files.py).
    """
    CREATE TABLE shared_files(
        name text PRIMARY KEY, content bytea NOT NULL,
        updated timestamptz NOT NULL DEFAULT now());
    """,
)
VERSION = len(MIGRATIONS)
UPGRADE_LOCK = 0x72656C6179  # advisory lock key: one upgrade at a time ("relay")


class SchemaError(Exception):
    """The database is not at the schema version this relay knows."""


def current_version(conn: psycopg.Connection) -> int:
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0) if row else 0


def upgrade(conn: psycopg.Connection) -> list[int]:
    """Apply the missing migrations, all or none, one upgrader at a time; returns their numbers."""
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (UPGRADE_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version("
            "version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())"
        )
        version = current_version(conn)
        if version > VERSION:
            raise SchemaError(f"the database is at schema {version}, newer than {VERSION}")
        for number in range(version + 1, VERSION + 1):
            with conn.transaction():
                conn.execute(MIGRATIONS[number - 1].encode())
                conn.execute("INSERT INTO schema_version(version) VALUES (%s)", (number,))
            applied.append(number)
    return applied


def check(conn: psycopg.Connection) -> None:
    version = current_version(conn)
    if version != VERSION:
        raise SchemaError(
            f"the database is at schema version {version}, this relay needs {VERSION}: "
            "run `relay db upgrade`"
        )
