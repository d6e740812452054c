"""A throwaway PostgreSQL server for the tests (Debian's postgresql package, no systemd).

One server per test session, in a temporary directory, listening on 127.0.0.1 and a free
port; a database migrated to the current schema serves as the template from which every test
gets a fresh database (CREATE DATABASE ... TEMPLATE copies files: quick). Without the
server binaries or psycopg the tests that need them skip, and fail in CI (tests/helpers.need).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_ports, need

TEMPLATE = "relay_template"
_numbers = itertools.count(1)


def server_binaries() -> Path | None:
    """The bin directory of the newest installed PostgreSQL, if any."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
    )
    return Path(found[-1]).parent if found else None


@dataclass
class PgServer:
    port: int
    process: subprocess.Popen[bytes]

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.encode())


def _as_postgres() -> dict[str, Any]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root, but there is no postgres user to run the server as")
    return {"user": "postgres", "group": "postgres"}


def _wait_until_ready(server: PgServer, log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"postgres exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            psycopg.connect(server.dsn("postgres"), connect_timeout=1).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                pytest.fail(f"postgres did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)


@contextmanager
def running_server(root: Path, *, durable: bool = False) -> Iterator[PgServer]:
    """A PostgreSQL server with its cluster in `root` (created), stopped on the way out.
    The tests run it without fsync (nothing must survive the machine); `durable` keeps
    PostgreSQL's defaults, for figures (bench/scaleout)."""
    bindir = server_binaries()
    assert bindir is not None
    user = _as_postgres()
    root.mkdir(parents=True, exist_ok=True)
    if user:
        shutil.chown(root, "postgres", "postgres")
    data, log = root / "data", root / "postgres.log"
    subprocess.run(
        [bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True, capture_output=True, **user,
    )  # fmt: skip
    fast = [] if durable else [
        "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
    ]  # fmt: skip
    port = free_ports(1)[0]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [bindir / "postgres", "-D", data, "-k", root, "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", *fast],
            stdout=out, stderr=subprocess.STDOUT, **user,
        )  # fmt: skip
    server = PgServer(port, process)
    try:
        _wait_until_ready(server, log)
        yield server
    finally:
        process.terminate()  # SIGTERM: smart shutdown; nothing is connected any more
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    need(
        server_binaries() is not None,
        "PostgreSQL is not installed (tests/system-packages.txt: postgresql)",
    )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        need(False, "psycopg is not installed (pip install -e '.[test,postgresql]')")
    root = Path(tempfile.mkdtemp(prefix="relay-pg-"))
    try:
        with running_server(root) as server:
            _make_template(server)
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _make_template(server: PgServer) -> None:
    import psycopg

    from relay.store.postgres import schema

    server.admin(f"CREATE DATABASE {TEMPLATE}")
    with psycopg.connect(server.dsn(TEMPLATE)) as conn:
        schema.upgrade(conn)


def fresh_database(server: PgServer, *, migrated: bool = True) -> str:
    """The DSN of a new, empty database (with the relay's tables unless migrated=False)."""
    name = f"relay_test_{os.getpid()}_{next(_numbers)}"
    server.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE if migrated else 'template0'}")
    return server.dsn(name)


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A fresh database at the current schema, for this test alone."""
    return fresh_database(pg_server)
