"""Accounts: chatmail JIT creation rules, password checks, blocking, concurrent first logins."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from relay.log import Logger
from relay.store import Store, open_store
from tests.store.conftest import PASSWORD
from tests.store.helpers import Clock, addr, store_config


async def test_first_login_creates_and_later_logins_check_the_password(store: Store) -> None:
    a = addr("newuser01")
    first = await store.login(a, PASSWORD, create=True)
    assert first.ok and first.created
    again = await store.login(a, PASSWORD, create=True)
    assert again.ok and not again.created
    wrong = await store.login(a, "another-password", create=True)
    assert not wrong.ok and not wrong.created
    # the wrong password did not overwrite the stored one
    assert (await store.login(a, PASSWORD, create=False)).ok
    assert await store.account_exists(a)
    assert await store.account_count() == 1
    assert await store.list_mailboxes(a) == [await _inbox_entry(store, a)]


async def _inbox_entry(store: Store, a: str):
    [entry] = [m for m in await store.list_mailboxes(a) if m.name == "INBOX"]
    return entry


async def test_creation_rules(store: Store) -> None:
    refused = {
        "wrong domain": ("newuser01@example.org", PASSWORD),
        "short password": (addr("newuser02"), "short"),
        "localpart too short": (addr("short"), PASSWORD),
        "localpart too long": (addr("muchtoolong1"), PASSWORD),
        "bad characters": (addr("new+user1"), PASSWORD),
        "two @": ("a@b" + addr("cdefghi"), PASSWORD),
    }
    for why, (a, pw) in refused.items():
        result = await store.login(a, pw, create=True)
        assert not result.ok, why
        assert result.reason, why
    assert await store.account_count() == 0
    # not asked to create: an unknown account just fails
    assert not (await store.login(addr("newuser03"), PASSWORD, create=False)).ok
    # addresses are case-insensitive: an upper-case login reaches the same account
    assert (await store.login(addr("NEWUSER04"), PASSWORD, create=True)).created
    assert (await store.login(addr("newuser04"), PASSWORD, create=False)).ok


async def test_registration_closed_or_disk_full_refuses_new_accounts(tmp_path: Path) -> None:
    base = store_config(tmp_path / "data")
    variants = {
        "jit off": dataclasses.replace(base.accounts, jit=False),
        "registration closed": dataclasses.replace(base.accounts, registration_open=False),
        "disk nearly full": dataclasses.replace(base.accounts, min_free_disk_space=1 << 60),
    }
    for why, accounts in variants.items():
        config = dataclasses.replace(base, accounts=accounts)
        async with open_store(config, Logger(level="error"), expiry_interval=None) as store:
            result = await store.login(addr("newuser01"), PASSWORD, create=True)
            assert not result.ok, why
            assert await store.account_count() == 0, why


async def test_existing_accounts_still_log_in_when_registration_is_closed(
    store: Store, alice: str
) -> None:
    store.config = dataclasses.replace(
        store.config, accounts=dataclasses.replace(store.config.accounts, registration_open=False)
    )
    assert (await store.login(alice, PASSWORD, create=True)).ok
    assert not (await store.login(addr("newuser01"), PASSWORD, create=True)).ok


async def test_ten_concurrent_first_logins_all_succeed(store: Store) -> None:
    a = addr("concurren")
    results = []

    async def login() -> None:
        results.append(await store.login(a, PASSWORD, create=True))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(login)
    assert all(r.ok for r in results), results
    assert sum(r.created for r in results) == 1
    assert await store.account_count() == 1
    assert (await store.login(a, PASSWORD, create=False)).ok


async def test_concurrent_first_logins_with_different_passwords_one_wins(store: Store) -> None:
    a = addr("racewith1")
    results: dict[str, bool] = {}

    async def login(pw: str) -> None:
        results[pw] = (await store.login(a, pw, create=True)).ok

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(login, f"password-{i}")
    winners = [pw for pw, ok in results.items() if ok]
    assert len(winners) == 1
    assert (await store.login(a, winners[0], create=False)).ok


async def test_blocked_address_is_removed_and_never_recreated(store: Store, alice: str) -> None:
    await store.deliver_to_inboxes([alice], b"Subject: hi\r\n\r\nhello\r\n")
    await store.block(alice)
    assert await store.is_blocked(alice)
    assert not await store.account_exists(alice)
    assert not (await store.login(alice, PASSWORD, create=True)).ok
    assert await store.account_count() == 0


async def test_deleted_account_can_be_created_again_empty(store: Store, alice: str) -> None:
    await store.deliver_to_inboxes([alice], b"Subject: hi\r\n\r\nhello\r\n")
    await store.delete_account(alice)
    assert not await store.account_exists(alice)
    assert not (await store.login(alice, PASSWORD, create=False)).ok
    assert (await store.login(alice, "a-new-password", create=True)).created
    assert (await store.snapshot(alice, "INBOX")).messages == []


async def test_accounts_and_password_survive_restart(tmp_path: Path) -> None:
    config = store_config(tmp_path / "data")
    a = addr("persisted")
    async with open_store(config, Logger(level="error"), expiry_interval=None) as store:
        assert (await store.login(a, PASSWORD, create=True)).created
    async with open_store(config, Logger(level="error"), expiry_interval=None) as store:
        assert (await store.login(a, PASSWORD, create=True)) == (
            await store.login(a, PASSWORD, create=False)
        )
        assert not (await store.login(a, "wrong-password", create=True)).ok


async def test_stored_hash_is_salted_argon2id(store: Store) -> None:
    from relay.core.passwords import hash_password, verify_password

    h1, h2 = hash_password(PASSWORD), hash_password(PASSWORD)
    assert h1.startswith("$argon2id$v=19$") and h1 != h2
    assert verify_password(PASSWORD, h1) and not verify_password("nope-nope-nope", h1)
    assert not verify_password(PASSWORD, "garbage")


async def test_logins_keep_an_account_alive(tmp_path: Path) -> None:
    config = store_config(tmp_path / "data")
    clock = Clock()
    log = Logger(level="error")
    active, idle = addr("activeusr"), addr("idleuser1")
    async with open_store(config, log, clock=clock, expiry_interval=None) as store:
        for a in (active, idle):
            assert (await store.login(a, PASSWORD, create=True)).created
        for _ in range(10):
            clock.advance_days(10)
            assert (await store.login(active, PASSWORD, create=False)).ok
        result = await store.expire()
        assert result.accounts == 1
        assert await store.account_exists(active)
        assert not await store.account_exists(idle)
