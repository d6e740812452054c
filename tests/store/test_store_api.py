"""The MailStore Protocol, and the primitives that let login logic live outside the store."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import trio

from relay.store import AuthRecord, MailStore, Store
from tests.store.helpers import Batches, Clock, addr

HASH = "$argon2id$not-a-real-hash"


def as_mail_store(store: Store) -> MailStore:
    # mypy checks this assignment: Store must structurally satisfy MailStore.
    typed: MailStore = store
    return typed


def protocol_members() -> list[str]:
    return [
        name
        for name in dir(MailStore)
        if not name.startswith("_") and callable(getattr(MailStore, name))
    ]


async def test_store_satisfies_the_mail_store_protocol(store: Store) -> None:
    assert isinstance(as_mail_store(store), MailStore)
    # isinstance only looks at names; the signatures must match too.
    for name in protocol_members():
        want = inspect.signature(getattr(MailStore, name))
        got = inspect.signature(getattr(type(store), name))
        assert got == want, name
        assert inspect.iscoroutinefunction(getattr(type(store), name)) == (
            inspect.iscoroutinefunction(getattr(MailStore, name))
        ), name


async def test_account_primitives(store: Store, clock: Clock) -> None:
    a = addr("alice0001")
    assert store.today() == int(clock.now // 86400)
    assert await store.account_auth(a) == AuthRecord(None, False, 0)
    assert await store.add_account(a.upper(), HASH) == "created"
    assert await store.add_account(a, "$other") == "exists"
    assert await store.account_auth(a) == AuthRecord(HASH, False, store.today())
    clock.advance_days(2)
    batches = Batches(store)
    await store.touch_login(a.upper())
    await store.touch_login(a)  # the same day again: nothing written
    await store.touch_login(addr("nobody001"))  # no account: nothing, no error
    batches.check(1)
    assert (await store.account_auth(a)).login_day == store.today()
    await store.block(a)
    assert await store.account_auth(a) == AuthRecord(None, True, 0)
    assert await store.add_account(a, HASH) == "blocked"


async def test_update_metadata_is_an_atomic_read_modify_write(store: Store) -> None:
    a = addr("alice0001")
    await store.add_account(a, HASH)
    key = "/private/devicetoken"

    def add(token: str) -> Callable[[str | None], str | None]:
        return lambda old: token if old is None else f"{old}\n{token}"

    results: list[str | None] = []

    async def update(token: str) -> None:
        results.append(await store.update_metadata(a, key, add(token)))

    async with trio.open_nursery() as nursery:  # submitted together: one batch, in order
        for token in ("one", "two", "three"):
            nursery.start_soon(update, token)
    value = await store.get_metadata(a, key)
    assert value is not None and sorted(value.split("\n")) == ["one", "three", "two"]
    assert value in results  # the last update returned the final value
    batches = Batches(store)
    assert await store.update_metadata(a, key, lambda old: old) == value  # unchanged: no write
    batches.check(0)
    assert await store.update_metadata(a, key, lambda old: None) is None
    assert await store.get_metadata(a, key) is None
