"""Helpers for tests that run a real relay on loopback: configs, ports, processes."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from relay import config as config_mod
from relay.app import App
from relay.config import Config, Iroh, Listen, Push, Turn
from relay.core.passwords import hash_password
from relay.log import Logger
from relay.store import Delivery, DeliveryOutcome, MailStore

SERVICES = ("smtp", "submissions", "submission", "imaps", "imap", "https", "http")


def tcp_socket(host: str) -> socket.socket:
    """A TCP socket of the family of `host` (an IPv4 or IPv6 address)."""
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)


def free_ports(count: int, host: str = "127.0.0.1", taken: Collection[int] = ()) -> list[int]:
    """Ports that were free on `host` a moment ago (bound together so they are distinct).

    `taken`: ports already promised to something that has not bound them on `host` yet (the
    kernel hands out a port bound on another address of the same machine as free).
    """
    socks: list[socket.socket] = []
    try:
        while len(socks) < count:
            s = tcp_socket(host)
            s.bind((host, 0))
            if s.getsockname()[1] in taken:
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_config(data_dir: Path, host: str = "127.0.0.1", **sections: object) -> Config:
    """A LAN-mode config on `host` with every listener on a free port; `sections` override."""
    ports = dict(zip(SERVICES, free_ports(len(SERVICES), host), strict=True))
    config = Config(
        mail_domain=host,
        data_dir=data_dir,
        listen=Listen(address=[host], **ports),
        # Push on (the relay says so to clients), but to a port where nothing listens: a test
        # never reaches the real notification proxy. Push tests bring their own endpoint.
        push=Push(url=f"https://{_url_host(host)}:9/notify"),
        # No plain-HTTP iroh listener (its default port is fixed): tests that want one pass
        # iroh=Iroh(port=free port).
        iroh=Iroh(port=0),
        # Nor the TURN server on its fixed UDP port 3478: tests/turn brings its own.
        turn=Turn(port=0),
    )
    return dataclasses.replace(config, **sections)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def client_context(config: Config) -> ssl.SSLContext:
    """A client TLS context that trusts exactly this relay's certificate."""
    ctx = ssl.create_default_context(cafile=str(config.cert_path))
    ctx.check_hostname = False  # LAN mode: the SAN is an IP address
    return ctx


class Reachable:
    """How a test reaches a relay, from its config: host, ports, domain, trusted certificate."""

    config: Config

    def port(self, service: str) -> int:
        return getattr(self.config.listen, service)

    @property
    def host(self) -> str:
        return self.config.listen.address[0]

    @property
    def domain(self) -> str:
        return self.config.address_domain

    def ssl_client_context(self) -> ssl.SSLContext:
        return client_context(self.config)


@dataclass
class RelayServer(Reachable):
    config: Config
    app: App


@asynccontextmanager
async def serving(config: Config) -> AsyncIterator[RelayServer]:
    """A relay serving every listener in the caller's trio loop, stopped at the end."""
    from relay.server import serve

    async with trio.open_nursery() as nursery:
        listening = await nursery.start(
            lambda task_status: serve(config, log=Logger(level="warning"), task_status=task_status)
        )
        yield RelayServer(config=config, app=listening.app)
        nursery.cancel_scope.cancel()


@dataclass
class RelayProcess(Reachable):
    config: Config
    config_path: Path
    process: subprocess.Popen[bytes]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.05)


def start_relay_process(config: Config, config_path: Path, **popen: object) -> RelayProcess:
    """`relay serve --config F` as a child process, waited for until every port answers."""
    config_path.write_text(config_mod.to_toml(config), encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "relay", "serve", "--config", str(config_path)], env=env, **popen
    )
    try:
        for port in config.listen.services().values():
            wait_for_port(config.listen.address[0], port)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return RelayProcess(config=config, config_path=config_path, process=process)


def stop_relay_process(relay: RelayProcess) -> None:
    if relay.process.poll() is None:
        relay.process.terminate()
        try:
            relay.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            relay.process.kill()
            relay.process.wait()


def in_ci() -> bool:
    """CI (.ci/run sets CI=1): a missing prerequisite is a failure there, not a skip."""
    return bool(os.environ.get("CI"))


def need(condition: bool, reason: str) -> None:
    """Skip saying why on a developer machine; in CI a missing prerequisite fails the test."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"{reason} (CI provides it: tests/system-packages.txt, .ci/run)", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """The path of a system tool; skips without it, or fails in CI (see `need`)."""
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed (tests/system-packages.txt lists its package)")
    assert path is not None
    return path


TERMINAL_QR_GLYPHS = {"█": (1, 1), "▀": (1, 0), "▄": (0, 1), " ": (0, 0), "\xa0": (0, 0)}


def read_terminal_qr(text: str, workdir: Path) -> list[str]:
    """What a phone would read off a terminal QR (relay.web.qr.terminal): the half-block lines
    drawn as a dark terminal shows them (a glyph's drawn half light), decoded by zbarimg."""
    from PIL import Image

    rows = [
        line
        for line in text.splitlines()
        if line.strip() and set(line) <= set(TERMINAL_QR_GLYPHS) and set(line) & set("█▀▄")
    ]
    assert rows, f"no terminal QR in:\n{text}"
    scale, margin, width = 6, 4, max(len(row) for row in rows)
    image = Image.new(
        "L", ((width + 2 * margin) * scale, (2 * len(rows) + 2 * margin) * scale), 255
    )
    for y, row in enumerate(rows):
        for x, glyph in enumerate(row):
            for half, drawn in enumerate(TERMINAL_QR_GLYPHS[glyph]):
                if not drawn:  # undrawn is the terminal's dark background: a dark module
                    left, top = (x + margin) * scale, (2 * y + half + margin) * scale
                    image.paste(0, (left, top, left + scale, top + scale))
    path = workdir / "terminal-qr.png"
    image.save(path)
    return zbar_read(path)


def zbar_read(path: Path) -> list[str]:
    """The codes zbarimg reads in an image file, one per line."""
    result = subprocess.run(
        [require_tool("zbarimg"), "--raw", "-q", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return result.stdout.splitlines()


def record_throttle_delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every delay the login throttle (relay.ratelimit) waits from now on, in order: a test
    asserts which attempts were slowed down, and by how much, without timing them."""
    from relay import ratelimit

    delays: list[float] = []

    class RecordingTrio:
        def __getattr__(self, name: str) -> object:
            return getattr(trio, name)

        async def sleep(self, seconds: float) -> None:
            delays.append(seconds)
            await trio.sleep(seconds)

    monkeypatch.setattr(ratelimit, "trio", RecordingTrio())
    return delays


async def make_account(store: MailStore, address: str, password: str) -> bool:
    """Create an account directly in the store (no login); True if it is there now (created,
    or already there from an earlier run), False if the address is blocked."""
    pwhash = await trio.to_thread.run_sync(hash_password, password)
    return await store.add_account(address, pwhash) != "blocked"


async def deliver_to(store: MailStore, recipients: list[str], data: bytes) -> DeliveryOutcome:
    """Store `data` in the INBOX of each recipient; raises the first recipient's refusal
    (NoSuchAccount, QuotaExceeded), the others still get it."""
    outcome = await store.commit_delivery(
        Delivery(sender="", local=tuple(recipients), local_data=data)
    )
    if outcome.failed:
        raise next(iter(outcome.failed.values()))
    return outcome


def nested_message(depth: int, size: int, *, sender: str = "mailer-daemon@[192.0.2.1]") -> bytes:
    """A hostile message: `depth` multiparts one inside the next (boundaries b0, b1, ...) around
    a text part that pads the whole to about `size` bytes (a mailer-daemon report at the top)."""
    head = (
        f"From: <{sender}>\r\nTo: <bob@example.org>\r\nSubject: deep\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b0"\r\n\r\n--b0\r\n'
    )
    levels = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(1, depth)
    )
    tail = "".join(f"\r\n--b{i}--" for i in reversed(range(depth))) + "\r\n"
    line = "x" * 70 + "\r\n"
    lines = max(1, (size - len(head) - len(levels) - len(tail)) // len(line))
    return (head + levels + "Content-Type: text/plain\r\n\r\n" + line * lines + tail).encode()
