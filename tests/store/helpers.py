"""Shared helpers for the store tests: a config in a temp dir and a fake clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from relay.config import Config
from relay.store import MailStore, Store

DOMAIN = "[127.0.0.1]"
T0 = 1_800_000_000.0  # a fixed "now" for tests that move time


def store_config(data_dir: Path, **limits: int) -> Config:
    config = Config.embedded_default(data_dir)
    return with_limits(config, **limits) if limits else config


def addr(local: str) -> str:
    return f"{local}@{DOMAIN}"


class Clock:
    """Injected "now": tests move time instead of sleeping. `advance_days` is time passing
    (the monotonic clock moves too), `jump_days` a wall clock set wrong (it does not)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.elapsed = 0.0
        self.synced = True  # as systemd-timesyncd would say

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.elapsed

    def confirmed(self) -> bool:
        return self.synced

    def store_clocks(self) -> dict[str, Callable[[], float] | Callable[[], bool]]:
        """open_store's clock arguments, all from this clock."""
        return {"clock": self, "monotonic": self.monotonic, "clock_confirmed": self.confirmed}

    def advance_days(self, days: float) -> None:
        self.now += days * 86400
        self.elapsed += days * 86400

    def jump_days(self, days: float) -> None:
        self.now += days * 86400


def with_limits(config: Config, **limits: int) -> Config:
    return dataclasses.replace(config, limits=dataclasses.replace(config.limits, **limits))


def on_postgresql(config: Config, dsn: str) -> Config:
    store = dataclasses.replace(config.store, backend="postgresql", dsn=dsn)
    return dataclasses.replace(config, store=store)


class Batches:
    """The embedded store's written batches (one fdatasync each) since this was made: what a
    step cost. The PostgreSQL store has no batches (every call is one transaction), so there
    check() checks nothing."""

    def __init__(self, store: MailStore) -> None:
        self.store = store
        self.before = self._count()

    def _count(self) -> int | None:
        return self.store._writer.batches if isinstance(self.store, Store) else None

    def check(self, written: int) -> None:
        now = self._count()
        if now is not None and self.before is not None:
            assert now - self.before == written
