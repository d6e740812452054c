"""Stand-ins shared by the hwctl tests: a store with just JIT accounts, an App around it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from relay.app import App
from relay.config import Config
from relay.log import Logger
from relay.store import LoginResult


class MemoryStore:
    """Just enough of the store contract: JIT accounts in a dict."""

    def __init__(self) -> None:
        self.accounts: dict[str, str] = {}

    async def login(self, addr: str, password: str, *, create: bool) -> LoginResult:
        if addr in self.accounts:
            ok = self.accounts[addr] == password
            return LoginResult(ok=ok, created=False, reason="" if ok else "bad password")
        if not create:
            return LoginResult(ok=False, created=False, reason="no such account")
        self.accounts[addr] = password
        return LoginResult(ok=True, created=True, reason="")

    async def account_count(self) -> int:
        return len(self.accounts)


def make_app(tmp_path: Path, domain: str = "127.0.0.1") -> App:
    config = Config.embedded_default(tmp_path / "data")
    config = dataclasses.replace(config, mail_domain=domain)
    config.data_dir.mkdir(parents=True)
    return App(config=config, store=MemoryStore(), tls=None, log=Logger(level="warning"))
