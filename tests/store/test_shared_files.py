"""Nodes on one PostgreSQL database end up with the same secrets (relay/core/shared_secrets.py):
whichever node starts first, or both at once."""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

import dkim as dkimpy
import pytest
import trio

from relay.config import Config
from relay.core.shared_secrets import make_local, shared_names, sync_shared
from relay.log import Logger
from relay.outbound import dkim
from relay.store import open_store
from relay.tls import TLSManager
from tests.helpers import make_config
from tests.store.helpers import on_postgresql

DOMAIN = "chat.example.org"
SECRETS = ("admin_token", "turn-secret", "shadowsocks-password", "dkim/opendkim.private")
LOG = Logger(level="error")


def node_config(data_dir: Path, dsn: str) -> Config:
    config = dataclasses.replace(make_config(data_dir), mail_domain=DOMAIN)
    return on_postgresql(config, dsn)


def contents(config: Config) -> dict[str, bytes]:
    return {name: (config.data_dir / name).read_bytes() for name in shared_names(config)}


@asynccontextmanager
async def two_nodes(tmp_path: Path, dsn: str) -> AsyncIterator[list[tuple[Config, object]]]:
    async with AsyncExitStack() as stack:
        nodes = []
        for n in ("a", "b"):
            config = node_config(tmp_path / n, dsn)
            store = await stack.enter_async_context(open_store(config, LOG, expiry_interval=None))
            nodes.append((config, store))
        yield nodes


def test_the_shared_names_are_the_generated_files(tmp_path: Path) -> None:
    config = node_config(tmp_path, "")
    assert dkim.key_path(config) == config.data_dir / "dkim" / "opendkim.private"
    assert set(SECRETS) | {"tls/cert.pem", "tls/key.pem"} == set(shared_names(config))


async def test_the_first_node_s_secrets_win(tmp_path: Path, pg_dsn: str) -> None:
    async with two_nodes(tmp_path, pg_dsn) as nodes:
        (a, store_a), (b, store_b) = nodes
        tls_a, tls_b = TLSManager(a), TLSManager(b)
        for config in (a, b):
            make_local(config)
        before_a, before_b = contents(a), contents(b)
        for name in before_a:
            assert before_a[name] != before_b[name], name  # each node made its own

        assert await sync_shared(a, store_a, tls_a, LOG) == []  # the first: nothing to take
        assert contents(a) == before_a
        changed = await sync_shared(b, store_b, tls_b, LOG)
        assert set(changed) == set(before_a)
        assert contents(b) == before_a
        for name in before_a:
            assert stat.S_IMODE((b.data_dir / name).stat().st_mode) == 0o600, name
        # B serves A's certificate now, without a restart.
        assert tls_b.certificate() == tls_a.certificate()
        # A restart changes nothing.
        assert await sync_shared(b, store_b, tls_b, LOG) == []
        assert await sync_shared(a, store_a, tls_a, LOG) == []


async def test_mail_signed_by_one_node_verifies_with_the_other_s_record(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with two_nodes(tmp_path, pg_dsn) as nodes:
        (a, store_a), (b, store_b) = nodes
        message = f"From: alice@{DOMAIN}\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nhello\r\n"
        record = {}

        def dns(name: bytes, timeout: int = 5) -> bytes:
            assert name == f"opendkim._domainkey.{DOMAIN}.".encode()
            return record["value"].encode()

        for config in (a, b):
            make_local(config)
        record["value"] = dkim.record_value(a)
        unsynced = dkim.sign_now(b, message.encode())
        assert not dkimpy.verify(unsynced, dnsfunc=dns)  # B's own key: DNS names A's

        await sync_shared(a, store_a, TLSManager(a), LOG)
        await sync_shared(b, store_b, TLSManager(b), LOG)
        signed = dkim.sign_now(b, message.encode())
        assert dkimpy.verify(signed, dnsfunc=dns)


async def test_nodes_starting_at_once_agree(tmp_path: Path, pg_dsn: str) -> None:
    for round in range(3):
        async with two_nodes(tmp_path / str(round), pg_dsn) as nodes:
            for config, _ in nodes:
                make_local(config)
            async with trio.open_nursery() as nursery:
                for config, store in nodes:
                    nursery.start_soon(partial(sync_shared, config, store, TLSManager(config), LOG))
            (a, _), (b, _) = nodes
            assert contents(a) == contents(b)


async def test_relays_on_one_database_share_their_secrets(tmp_path: Path, pg_dsn: str) -> None:
    """Through `serve`: the sync runs before the services start."""
    from relay.server import serve

    configs = [node_config(tmp_path / n, pg_dsn) for n in ("a", "b")]
    async with trio.open_nursery() as nursery:
        apps = []
        for config in configs:
            listening = await nursery.start(partial(serve, config, log=LOG))
            apps.append(listening.app)
        a, b = configs
        assert contents(a) == contents(b)
        for name in SECRETS:
            assert (a.data_dir / name).read_bytes(), name
        # The TLS context B serves with holds A's certificate.
        assert apps[1].tls.certificate() == apps[0].tls.certificate()
        nursery.cancel_scope.cancel()


@dataclasses.dataclass
class KeeperApp:
    """What a CertificateKeeper uses of the App."""

    config: Config
    store: object
    tls: TLSManager
    log: Logger = LOG


def acme_node(config: Config) -> Config:
    tls = dataclasses.replace(config.tls, mode="acme", acme_directory="https://127.0.0.1:9/dir")
    return dataclasses.replace(config, tls=tls)


async def test_one_node_leads_acme_until_it_stops(tmp_path: Path, pg_dsn: str) -> None:
    async with AsyncExitStack() as stack:
        stores = []
        for n in ("a", "b"):
            config = node_config(tmp_path / n, pg_dsn)
            stores.append(await stack.enter_async_context(open_store(config, LOG)))
        a, b = stores
        assert await a.acme_leader()  # type: ignore[attr-defined]
        assert not await b.acme_leader()  # type: ignore[attr-defined]
        assert await a.acme_leader()  # type: ignore[attr-defined]  # still, while connected
        await a.close_leadership()  # type: ignore[attr-defined]  # as when A stops
        assert await b.acme_leader()  # type: ignore[attr-defined]
        assert not await a.acme_leader()  # type: ignore[attr-defined]


async def test_the_leader_s_certificate_reaches_the_other_node(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relay.tls import acme_state_dir, make_self_signed, write_pair
    from relay.web import acme

    monkeypatch.setattr(acme, "CLUSTER_CHECK", 0.05)
    issued = []

    async def obtain(self: acme.CertificateKeeper) -> None:  # the CA, as far as B can tell
        cert_pem, key_pem = make_self_signed(DOMAIN)
        state = acme_state_dir(self.app.config)
        write_pair(state / "cert.pem", state / "key.pem", cert_pem, key_pem)
        self.app.tls.install(cert_pem, key_pem)
        issued.append((self.app.config.data_dir.name, cert_pem))

    monkeypatch.setattr(acme.CertificateKeeper, "obtain", obtain)
    async with two_nodes(tmp_path, pg_dsn) as nodes:
        apps = [KeeperApp(acme_node(c), s, TLSManager(acme_node(c))) for c, s in nodes]
        a, b = apps
        assert b.tls.certificate() != a.tls.certificate()  # each its own placeholder
        keepers = [acme.CertificateKeeper(app) for app in apps]  # type: ignore[arg-type]
        assert await a.store.acme_leader()  # type: ignore[attr-defined]  # A leads
        async with trio.open_nursery() as nursery:
            await nursery.start(keepers[1].run)  # B first, with no certificate anywhere
            await trio.sleep(0.3)  # six of B's checks
            assert issued == []  # B waits for the leader's
            await nursery.start(keepers[0].run)
            with trio.fail_after(10):
                while not issued or b.tls.certificate() != a.tls.certificate():
                    await trio.sleep(0.05)
            assert [node for node, _ in issued] == ["a"]  # B never went to the CA
            assert (acme_state_dir(b.config) / "cert.pem").read_bytes() == issued[0][1]
            assert b.config.cert_path.read_bytes() == issued[0][1]
            # What a node starting now serves before its keeper runs is that one too.
            assert await b.store.shared_file("tls/cert.pem") == issued[0][1]  # type: ignore[attr-defined]

            keepers[0].renew_now()  # a renewal on A reaches B too
            with trio.fail_after(10):
                while len(issued) < 2 or b.config.cert_path.read_bytes() != issued[1][1]:
                    await trio.sleep(0.05)
            assert [node for node, _ in issued] == ["a", "a"]
            nursery.cancel_scope.cancel()


async def test_an_open_challenge_is_answered_by_every_node(tmp_path: Path, pg_dsn: str) -> None:
    from relay.web import acme

    async with two_nodes(tmp_path, pg_dsn) as nodes:
        (a, store_a), (b, store_b) = nodes
        app_a = KeeperApp(acme_node(a), store_a, TLSManager(acme_node(a)))
        app_b = KeeperApp(acme_node(b), store_b, TLSManager(acme_node(b)))
        keeper = acme.CertificateKeeper(app_a)  # type: ignore[arg-type]
        name = acme.shared_challenge("tok-1")

        def request() -> object:
            return dataclasses.make_dataclass("R", [("path", str)])(acme.CHALLENGE_PREFIX + "tok-1")

        assert (await acme.challenge(request(), app_b)).status == 404  # type: ignore[arg-type]
        await trio.to_thread.run_sync(keeper._publish, name, b"answer")
        response = await acme.challenge(request(), app_b)  # type: ignore[arg-type]
        assert (response.status, response.body) == (200, b"answer")
        await trio.to_thread.run_sync(keeper._publish, name, None)
        assert (await acme.challenge(request(), app_b)).status == 404  # type: ignore[arg-type]
