"""Whole relays in the test's trio loop, for federation between two (or more) of them.

Each relay is `relay.server.serve` with its outbound worker, on its own loopback address. The
peers' SMTP and HTTPS ports are the same number on every address, so one `peer_*_port`
setting reaches all of them, as port 25 and 443 do on the internet.
"""

from __future__ import annotations

import dataclasses
import imaplib
import io
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

import relay.federation as federation
from relay.config import Config, Listen
from relay.federation import inbound
from relay.log import Logger
from relay.server import serve
from relay.web import routes
from tests.federation.conftest import with_federation
from tests.helpers import SERVICES, client_context

PASSWORD = "password-for-tests"


def shared_ports(hosts: list[str]) -> dict[str, int]:
    """One port per service that is free on every host."""
    found: dict[str, int] = {}
    socks = []
    try:
        for service in SERVICES:
            while True:
                first = socket.socket()
                first.bind((hosts[0], 0))
                port = first.getsockname()[1]
                others = []
                try:
                    for host in hosts[1:]:
                        s = socket.socket()
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


def relay_config(data_dir: Path, host: str, ports: dict[str, int], **fed: Any) -> Any:
    """A LAN-mode relay on `host`, reaching its peers on the shared SMTP and HTTPS ports."""
    config = Config(mail_domain=host, data_dir=data_dir, listen=Listen(address=[host], **ports))
    keys = {"peer_smtp_port": ports["smtp"], "peer_https_port": ports["https"], "retry_initial": 1}
    return with_federation(config, **{**keys, **fed})


def ensure_mxdeliv_route() -> None:
    """Until the web server routes /mxdeliv itself, add the route the federation provides."""
    if routes.find("/mxdeliv") is None:
        routes.ROUTES.append(
            routes.Route(
                "/mxdeliv",
                frozenset({"POST"}),
                inbound.route,
                max_body=lambda config: config.limits.max_message_size,
                plain_http=True,
            )
        )


@dataclass
class Relay:
    config: Any
    log_stream: io.StringIO = field(default_factory=io.StringIO)
    ca_file: str = ""  # clients trust this CA instead of the relay's own (self-signed) cert
    app: Any = None
    _scope: trio.CancelScope | None = None
    _stopped: trio.Event | None = None

    @property
    def host(self) -> str:
        return self.config.listen.address[0]

    def address(self, local: str) -> str:
        return f"{local}@{self.config.address_domain}"

    async def start(self, nursery: trio.Nursery) -> None:
        ensure_mxdeliv_route()
        self._stopped = trio.Event()
        self.app = await nursery.start(self._run)

    async def _run(self, task_status: trio.TaskStatus[Any]) -> None:
        log = Logger(stream=self.log_stream, level="info")
        try:
            with trio.CancelScope() as self._scope:
                async with trio.open_nursery() as inner:
                    listening = await inner.start(
                        lambda task_status: serve(self.config, log=log, task_status=task_status)
                    )
                    if federation.worker(listening.app) is None:
                        await inner.start(federation.run_outbound, listening.app)
                    task_status.started(listening.app)
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        self._scope.cancel()
        await self._stopped.wait()

    def replacement(self, data_dir: Path) -> Relay:
        """A relay for the same address with fresh data (a stopped relay's store stays locked
        in this process: open_store skips closing its database when cancelled)."""
        base = getattr(self.config, "_config", self.config)
        config = dataclasses.replace(base, data_dir=data_dir)
        return Relay(with_federation(config, **dataclasses.asdict(self.config.federation)))

    def client_context(self) -> ssl.SSLContext:
        if not self.ca_file:
            return client_context(self.config)
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.check_hostname = False  # clients connect to the IP; the name is checked by peers
        return ctx

    def log_lines(self, event: str) -> list[str]:
        return [
            line for line in self.log_stream.getvalue().splitlines() if f" {event} " in f"{line} "
        ]

    async def account(self, addr: str) -> None:
        assert (await self.app.store.login(addr, PASSWORD, create=True)).ok

    async def submit(self, sender: str, recipients: list[str], message: bytes) -> None:
        """Send like a Delta Chat client: SMTPS with login, in a thread (blocking smtplib)."""

        def send() -> None:
            port = self.config.listen.submissions
            ctx = self.client_context()
            with smtplib.SMTP_SSL(self.host, port, context=ctx, timeout=20) as smtp:
                smtp.login(sender, PASSWORD)
                smtp.sendmail(sender, recipients, message)

        await trio.to_thread.run_sync(send)

    async def fetch_inbox(self, addr: str) -> list[bytes]:
        """Every message in INBOX over IMAPS, as a client sees it."""

        def fetch() -> list[bytes]:
            ctx = self.client_context()
            with imaplib.IMAP4_SSL(
                self.host, self.config.listen.imaps, ssl_context=ctx, timeout=20
            ) as imap:
                imap.login(addr, PASSWORD)
                imap.select("INBOX")
                _, data = imap.uid("SEARCH", "ALL")
                found = []
                for uid in data[0].split():
                    _, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                    found.append(parts[0][1])
                return found

        return await trio.to_thread.run_sync(fetch)

    async def wait_for_mail(self, addr: str, count: int = 1, timeout: float = 20.0) -> list[bytes]:
        with trio.fail_after(timeout):
            while True:
                snap = await self.app.store.snapshot(addr, "INBOX")
                if len(snap.messages) >= count:
                    return await self.fetch_inbox(addr)
                await trio.sleep(0.05)
