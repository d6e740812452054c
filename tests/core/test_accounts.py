"""Logging in: chatmail JIT creation rules, password checks, blocking, concurrent first logins.
One `authenticate()` serves IMAP, SMTP and WebIMAP."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import trio

from relay.app import App
from relay.core.accounts import Authenticated, authenticate
from relay.log import Logger
from tests.core.conftest import open_app
from tests.helpers import deliver_to
from tests.store.helpers import Clock, addr, store_config

PASSWORD = "correct-horse-9"


async def login(app: App, address: str, password: str = PASSWORD) -> Authenticated:
    return await authenticate(app, "192.0.2.1", address, password, via="test")


def closed(app: App, **accounts: object) -> None:
    rules = dataclasses.replace(app.config.accounts, **accounts)
    app.config = dataclasses.replace(app.config, accounts=rules)
    app.store.config = app.config


async def test_first_login_creates_and_later_logins_check_the_password(app: App) -> None:
    store, a = app.store, addr("newuser01")
    first = await login(app, a)
    assert first.ok and first.created
    again = await login(app, a)
    assert again.ok and not again.created
    wrong = await login(app, a, "another-password")
    assert not wrong.ok and not wrong.created
    # the wrong password did not overwrite the stored one
    assert (await login(app, a)).ok
    assert await store.account_exists(a)
    assert await store.account_count() == 1
    assert [m.name for m in await store.list_mailboxes(a)] == ["INBOX"]


async def test_creation_rules(app: App) -> None:
    refused = {
        "wrong domain": ("newuser01@example.org", PASSWORD),
        "short password": (addr("newuser02"), "short"),
        "localpart too short": (addr("short"), PASSWORD),
        "localpart too long": (addr("muchtoolong1"), PASSWORD),
        "bad characters": (addr("new+user1"), PASSWORD),
        "two @": ("a@b" + addr("cdefghi"), PASSWORD),
    }
    app.log = Logger(stream=io.StringIO())
    for why, (a, pw) in refused.items():
        assert (await login(app, a, pw)).verdict == "failed", why
    assert await app.store.account_count() == 0
    assert app.log.stream is not None
    reasons = [line for line in app.log.stream.getvalue().splitlines() if "login-failed" in line]
    assert len(reasons) == len(refused) and all("reason=" in line for line in reasons)
    assert not any(line.endswith("reason=") for line in reasons)
    # addresses are case-insensitive: an upper-case login reaches the same account
    assert (await login(app, addr("NEWUSER04"))).created
    assert (await login(app, addr("newuser04"))) == Authenticated("ok", addr("newuser04"))


async def test_registration_closed_or_disk_full_refuses_new_accounts(tmp_path: Path) -> None:
    variants = {
        "jit off": {"jit": False},
        "registration closed": {"registration_open": False},
        "disk nearly full": {"min_free_disk_space": 1 << 60},
    }
    for why, change in variants.items():
        async with open_app(store_config(tmp_path / why)) as app:
            closed(app, **change)
            assert not (await login(app, addr("newuser01"))).ok, why
            assert await app.store.account_count() == 0, why


async def test_existing_accounts_still_log_in_when_registration_is_closed(app: App) -> None:
    alice = addr("alice0001")
    assert (await login(app, alice)).created
    closed(app, registration_open=False)
    assert (await login(app, alice)).ok
    assert not (await login(app, addr("newuser01"))).ok


async def test_ten_concurrent_first_logins_all_succeed(app: App) -> None:
    a = addr("concurren")
    results: list[Authenticated] = []

    async def one() -> None:
        results.append(await login(app, a))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(one)
    assert all(r.ok for r in results), results
    assert sum(r.created for r in results) == 1
    assert await app.store.account_count() == 1
    assert (await login(app, a)).ok


async def test_concurrent_first_logins_with_different_passwords_one_wins(app: App) -> None:
    a = addr("racewith1")
    results: dict[str, bool] = {}

    async def one(pw: str) -> None:
        results[pw] = (await login(app, a, pw)).ok

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(one, f"password-{i}")
    winners = [pw for pw, ok in results.items() if ok]
    assert len(winners) == 1
    assert (await login(app, a, winners[0])).ok


async def test_blocked_address_is_removed_and_never_recreated(app: App) -> None:
    store, alice = app.store, addr("alice0001")
    assert (await login(app, alice)).created
    await deliver_to(store, [alice], b"Subject: hi\r\n\r\nhello\r\n")
    await store.block(alice)
    assert await store.is_blocked(alice)
    assert not await store.account_exists(alice)
    assert not (await login(app, alice)).ok
    assert await store.account_count() == 0


async def test_deleted_account_can_be_created_again_empty(app: App) -> None:
    store, alice = app.store, addr("alice0001")
    assert (await login(app, alice)).created
    await deliver_to(store, [alice], b"Subject: hi\r\n\r\nhello\r\n")
    await store.delete_account(alice)
    assert not await store.account_exists(alice)
    assert (await login(app, alice, "a-new-password")).created
    assert (await store.snapshot(alice, "INBOX")).messages == []
    assert not (await login(app, alice)).ok  # the old password is gone with the account


async def test_accounts_and_password_survive_restart(tmp_path: Path) -> None:
    config = store_config(tmp_path / "data")
    a = addr("persisted")
    async with open_app(config) as app:
        assert (await login(app, a)).created
    async with open_app(config) as app:  # a fresh login cache: the stored hash decides
        assert (await login(app, a)) == Authenticated("ok", a)
        assert not (await login(app, a, "wrong-password")).ok


async def test_stored_hash_is_salted_argon2id() -> None:
    from relay.core.passwords import hash_password, verify_password

    h1, h2 = hash_password(PASSWORD), hash_password(PASSWORD)
    assert h1.startswith("$argon2id$v=19$") and h1 != h2
    assert verify_password(PASSWORD, h1) and not verify_password("nope-nope-nope", h1)
    assert not verify_password(PASSWORD, "garbage")


async def test_logins_keep_an_account_alive(tmp_path: Path) -> None:
    clock = Clock()
    active, idle = addr("activeusr"), addr("idleuser1")
    async with open_app(store_config(tmp_path / "data"), clock) as app:
        for a in (active, idle):
            assert (await login(app, a)).created
        for _ in range(10):
            clock.advance_days(10)
            assert (await login(app, active)).ok
        result = await app.store.expire()
        assert result.accounts == 1
        assert await app.store.account_exists(active)
        assert not await app.store.account_exists(idle)


async def test_a_created_account_is_announced(app: App) -> None:
    with app.events.subscribe() as events:
        assert (await login(app, addr("announced"))).created
        assert (await login(app, addr("announced"))).ok
        with trio.fail_after(30):
            assert await events.receive() == {"type": "account_created", "addr": addr("announced")}
        assert events.statistics().current_buffer_used == 0  # once, not at every login
