"""Whole relays for federation tests, each on its own loopback address.

`Relay` is `relay.server.serve` in the test's trio loop (its store and log are at hand);
`ChildRelay` is `relay serve` in a child process, for tests that stop, crash and restart a
relay. The peers' SMTP and HTTPS ports are the same number on every address, so one
`peer_*_port` setting reaches all of them, as port 25 and 443 do on the internet.
"""

from __future__ import annotations

import imaplib
import io
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from relay import config as config_mod
from relay.config import Config, Listen
from relay.log import Logger
from relay.server import serve
from relay.store import QueueEntry
from tests.federation.conftest import with_federation
from tests.helpers import (
    SERVICES,
    RelayProcess,
    client_context,
    make_account,
    start_relay_process,
    stop_relay_process,
    tcp_socket,
)

PASSWORD = "password-for-tests"


def shared_ports(hosts: list[str]) -> dict[str, int]:
    """One port per service that is free on every host."""
    found: dict[str, int] = {}
    socks = []
    try:
        for service in SERVICES:
            while True:
                first = tcp_socket(hosts[0])
                first.bind((hosts[0], 0))
                port = first.getsockname()[1]
                others = []
                try:
                    for host in hosts[1:]:
                        s = tcp_socket(host)
                        others.append(s)
                        s.bind((host, port))
                except OSError:
                    for s in [first, *others]:
                        s.close()
                    continue
                socks += [first, *others]
                found[service] = port
                break
    finally:
        for s in socks:
            s.close()
    return found


def relay_config(data_dir: Path, host: str, ports: dict[str, int], **fed: Any) -> Config:
    """A LAN-mode relay on `host`, reaching its peers on the shared SMTP and HTTPS ports."""
    config = Config(mail_domain=host, data_dir=data_dir, listen=Listen(address=[host], **ports))
    keys = {"peer_smtp_port": ports["smtp"], "peer_https_port": ports["https"], "retry_initial": 1}
    return with_federation(config, **{**keys, **fed})


@dataclass
class Endpoint:
    """What users see of a relay: SMTPS submission and IMAPS."""

    config: Config
    ca_file: str = ""  # clients trust this CA instead of the relay's own (self-signed) cert

    @property
    def host(self) -> str:
        return self.config.listen.address[0]

    def address(self, local: str) -> str:
        return f"{local}@{self.config.address_domain}"

    def client_context(self) -> ssl.SSLContext:
        if not self.ca_file:
            return client_context(self.config)
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.check_hostname = False  # clients connect to the IP; the name is checked by peers
        return ctx

    async def submit(self, sender: str, recipients: list[str], message: bytes) -> None:
        """Send like a Delta Chat client: SMTPS with login (which creates the account)."""

        def send() -> None:
            port = self.config.listen.submissions
            ctx = self.client_context()
            with smtplib.SMTP_SSL(self.host, port, context=ctx, timeout=20) as smtp:
                smtp.login(sender, PASSWORD)
                smtp.sendmail(sender, recipients, message)

        await trio.to_thread.run_sync(send)

    async def fetch_inbox(self, addr: str) -> list[bytes]:
        """Every message in INBOX over IMAPS, as a client sees it (logging in creates it)."""
        return await self.wait_for_mail(addr, count=0)

    async def wait_for_mail(self, addr: str, count: int = 1, timeout: float = 20.0) -> list[bytes]:
        """INBOX over IMAPS once it holds at least `count` messages."""

        def poll() -> list[bytes]:
            deadline = time.monotonic() + timeout
            with imaplib.IMAP4_SSL(
                self.host, self.config.listen.imaps, ssl_context=self.client_context(), timeout=20
            ) as imap:
                imap.login(addr, PASSWORD)
                imap.select("INBOX")
                while True:
                    _, data = imap.uid("SEARCH", "ALL")
                    uids = data[0].split()
                    if len(uids) >= count:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{len(uids)} of {count} messages for {addr}")
                    time.sleep(0.05)
                    imap.noop()
                found = []
                for uid in uids:
                    _, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                    found.append(parts[0][1])
                return found

        return await trio.to_thread.run_sync(poll)

    async def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`relay <args> --config F`, as an operator types it."""
        config_path = self.config.data_dir.with_suffix(".toml")
        config_path.write_text(config_mod.to_toml(self.config), encoding="utf-8")
        argv = [sys.executable, "-m", "relay", *args, "--config", str(config_path)]
        return await trio.to_thread.run_sync(
            lambda: subprocess.run(argv, capture_output=True, text=True, timeout=60)
        )


@dataclass
class Relay(Endpoint):
    """`relay.server.serve` in the test's trio loop, logging into `log_stream`."""

    log_stream: io.StringIO = field(default_factory=io.StringIO)
    app: Any = None
    log_level: str = "info"

    async def start(self, nursery: trio.Nursery) -> None:
        # As `relay serve` makes it: privacy.no_log applies to every line.
        log = Logger(
            stream=self.log_stream, level=self.log_level, no_log=self.config.privacy.no_log
        )
        listening = await nursery.start(
            lambda task_status: serve(self.config, log=log, task_status=task_status)
        )
        self.app = listening.app

    def log_lines(self, event: str) -> list[str]:
        return [
            line for line in self.log_stream.getvalue().splitlines() if f" {event} " in f"{line} "
        ]

    async def account(self, addr: str) -> None:
        assert await make_account(self.app.store, addr, PASSWORD)

    async def queue(self) -> list[QueueEntry]:
        return await self.app.store.queue_list()

    async def queue_empty(self) -> bool:
        return not await self.queue()

    async def tried(self) -> bool:
        """Every queued message has had at least one delivery attempt (and one is queued)."""
        entries = await self.queue()
        return bool(entries) and all(e.attempts for e in entries)


@dataclass
class ChildRelay(Endpoint):
    """`relay serve --config F` in a child process; its log goes to `log_path`."""

    child: RelayProcess | None = None

    @property
    def log_path(self) -> Path:
        return self.config.data_dir.with_suffix(".log")

    async def start(self) -> None:
        def run() -> RelayProcess:
            with self.log_path.open("ab") as log:
                path = self.config.data_dir.with_suffix(".toml")
                return start_relay_process(self.config, path, stdout=log, stderr=subprocess.STDOUT)

        self.child = await trio.to_thread.run_sync(run)

    async def stop(self) -> None:
        """SIGTERM, as systemd stops it."""
        await trio.to_thread.run_sync(stop_relay_process, self.child)

    async def crash(self) -> None:
        """SIGKILL: the relay gets no chance to finish anything."""
        self.child.process.send_signal(signal.SIGKILL)
        await trio.to_thread.run_sync(self.child.process.wait)
