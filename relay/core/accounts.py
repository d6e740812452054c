"""Logging in, the one way for every protocol (IMAP, SMTP submission, WebIMAP).

`authenticate()` applies, in this order: the login throttle (per client network and per account,
shared by all protocols), the local-domain rule, the password check (Argon2id, with the in-memory
cache of accepted passwords so Delta Chat's login per connection stays cheap), and the chatmail
JIT rules that create an account at its first login. Clients only ever learn "failed" or "try
later"; the reason goes to the log.

Concurrent first logins of one address share one creation: the others wait for it and then get
in only with the same password.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import trio

from relay.core.passwords import LoginCache, hash_password, verify_password
from relay.ratelimit import TooManyFailures
from relay.store import StorageFull
from relay.store.rules import creation_refusal, is_local

if TYPE_CHECKING:
    from relay.app import App

HASHES_AT_ONCE = 2  # Argon2id takes 19 MiB per running hash

Verdict = Literal["ok", "failed", "throttled", "unavailable"]  # unavailable: data disk full
DISK_FULL = "data disk full"


@dataclass(frozen=True)
class Authenticated:
    verdict: Verdict
    addr: str  # lower-case
    created: bool = False

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


@dataclass
class _Creation:
    """A first login in progress: later logins of the same address wait for it."""

    password: str
    done: trio.Event = field(default_factory=trio.Event)
    ok: bool = False


@dataclass
class Accounts:
    """Per-relay login state: the password cache, the hashing limiter, creations in flight."""

    cache: LoginCache = field(default_factory=LoginCache)
    hashing: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(HASHES_AT_ONCE)
    )
    creating: dict[str, _Creation] = field(default_factory=dict)


async def authenticate(app: App, ip: str, user: str, password: str, *, via: str) -> Authenticated:
    addr = user.strip().lower()
    throttle = app.auth_throttle
    try:
        await throttle.before_attempt(ip, addr)
    except TooManyFailures:
        return Authenticated("throttled", addr)
    if not is_local(app.config, addr):
        throttle.record_failure(ip, None)  # a foreign address is nobody's account here
        _log_failure(app, ip, addr, via, "not a local address")
        return Authenticated("failed", addr)
    ok, created, reason = await _login(app, addr, password)
    if reason == DISK_FULL:  # not the client's fault: no failure is counted
        _log_failure(app, ip, addr, via, reason)
        return Authenticated("unavailable", addr)
    if not ok:
        throttle.record_failure(ip, addr)
        _log_failure(app, ip, addr, via, reason)
        return Authenticated("failed", addr)
    throttle.record_success(ip, addr)
    if created:
        app.log.info("account-created", account=app.log.redact(addr), via=via)
        app.events.publish({"type": "account_created", "addr": addr})
    return Authenticated("ok", addr, created)


def _log_failure(app: App, ip: str, addr: str, via: str, reason: str) -> None:
    log = app.log
    log.info("login-failed", via=via, ip=log.redact(ip), account=log.redact(addr), reason=reason)


async def _login(app: App, addr: str, password: str) -> tuple[bool, bool, str]:
    """(ok, created, reason if not ok)."""
    record = await app.store.account_auth(addr)
    if record.pwhash is not None:
        if not await _verify(app.accounts, addr, password, record.pwhash):
            return False, False, "wrong password"
        if record.login_day < app.store.today():
            await app.store.touch_login(addr)  # at most once a day per account
        return True, False, ""
    if record.blocked:
        return False, False, "address is blocked"
    rules = app.config.accounts
    if not (rules.jit and rules.registration_open):
        return False, False, "registration closed"
    return await _create(app, addr, password)


async def _create(app: App, addr: str, password: str) -> tuple[bool, bool, str]:
    state = app.accounts
    inflight = state.creating.get(addr)
    if inflight is not None:
        await inflight.done.wait()
        if inflight.ok and hmac.compare_digest(inflight.password.encode(), password.encode()):
            return True, False, ""
        return await _login(app, addr, password)
    creation = state.creating[addr] = _Creation(password)
    try:
        refusal = creation_refusal(app.config, addr, password)
        if refusal:
            return False, False, refusal
        if app.store.storage_full():
            return False, False, DISK_FULL
        async with state.hashing:
            pwhash = await trio.to_thread.run_sync(hash_password, password)
        try:
            outcome = await app.store.add_account(addr, pwhash)
        except StorageFull:
            return False, False, DISK_FULL
        if outcome == "blocked":
            return False, False, "address is blocked"
        if outcome == "exists":  # created meanwhile by another relay process or an import
            return await _login(app, addr, password)
        state.cache.remember(addr, password, pwhash)
        creation.ok = True
        return True, True, ""
    finally:
        del state.creating[addr]
        creation.done.set()


async def _verify(state: Accounts, addr: str, password: str, pwhash: str) -> bool:
    if state.cache.check(addr, password, pwhash):
        return True
    async with state.hashing:
        ok = await trio.to_thread.run_sync(verify_password, password, pwhash)
    if ok:
        state.cache.remember(addr, password, pwhash)
    return ok
