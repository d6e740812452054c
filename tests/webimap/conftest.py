"""A relay with WebIMAP on, in a thread of its own, and real clients: requests, websockets.

The relay runs its own trio loop in a background thread, so the tests are plain blocking code
with the clients a web developer would use; `relay.run(coro_fn, ...)` reaches into the relay's
loop for setup the HTTP API does not offer (storing a message, reading a counter).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import queue
import smtplib
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
import trio
from websockets.sync.client import ClientConnection, connect

from relay.app import App
from relay.config import Config, WebIMAP
from relay.log import Logger
from tests.helpers import Reachable, client_context, deliver_to, make_config
from tests.policy.corpus import armor, pgp_mime, pkesk_v6, seipd_v2

PASSWORD = "webimap-password-1"
_names = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "webimap(**keys): [webimap] keys for this test's relay")
    config.addinivalue_line("markers", "limits(**keys): [limits] keys for this test's relay")


def encrypted(
    sender: str, to: str = "hidden@example.org", subject: str = "[...]", mid: str = "0b1c2d3e"
) -> bytes:
    """A PGP/MIME message shaped like Delta Chat's (the gate lets it through). Submission
    hides the subject ("[...]"), so sent mail is told apart by its Message-ID <mid@localhost>."""
    message = pgp_mime(armor(pkesk_v6() + seipd_v2()), sender=sender)
    message = message.replace(b'To: "hidden-recipients": ;', f"To: <{to}>".encode())
    message = message.replace(b"<0b1c2d3e@localhost>", f"<{mid}@localhost>".encode())
    return message.replace(b"Subject: [...]", f"Subject: {subject}".encode())


def cleartext(sender: str, to: str) -> bytes:
    return (
        f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: hi\r\n"
        "Content-Type: text/plain\r\n\r\nnot encrypted\r\n"
    ).encode()


@dataclass
class LiveWebRelay(Reachable):
    config: Config
    app: App
    token: trio.lowlevel.TrioToken

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `await fn(*args)` in the relay's loop."""
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def set_webimap(self, **keys: Any) -> None:
        """Change [webimap] as a reload would (the App's config is replaced whole)."""

        def change() -> None:
            config = self.app.config
            self.app.config = dataclasses.replace(
                config, webimap=dataclasses.replace(config.webimap, **keys)
            )

        trio.from_thread.run_sync(change, trio_token=self.token)

    # -- clients ------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"https://{self.host}:{self.port('https')}"

    def new_account(self) -> tuple[str, str]:
        """A fresh address (created at its first login, JIT) and its password."""
        return f"web{next(_names):06d}@{self.domain}", PASSWORD

    def rest(
        self,
        method: str,
        path: str,
        account: tuple[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if account is not None:
            headers |= {"X-Email": account[0], "X-Password": account[1]}
        return requests.request(
            method,
            self.base + path,
            headers=headers,
            verify=str(self.config.cert_path),
            timeout=kwargs.pop("timeout", 30),
            **kwargs,
        )

    def ws_url(self, account: tuple[str, str], **params: Any) -> str:
        query = requests.models.RequestEncodingMixin._encode_params(
            {"email": account[0], "password": account[1], **params}
        )
        return f"wss://{self.host}:{self.port('https')}/webimap/ws?{query}"

    def ws(self, account: tuple[str, str], **params: Any) -> WS:
        ctx = client_context(self.config)
        conn = connect(self.ws_url(account, **params), ssl=ctx, open_timeout=30, max_size=None)
        return WS(conn)

    def smtp_send(self, account: tuple[str, str], to: str, data: bytes) -> None:
        ctx = client_context(self.config)
        with smtplib.SMTP_SSL(self.host, self.port("submissions"), context=ctx, timeout=30) as s:
            s.login(*account)
            s.sendmail(account[0], [to], data)

    def store_message(self, addr: str, data: bytes) -> None:
        self.run(deliver_to, self.app.store, [addr], data)


class WS:
    """A websockets connection speaking WebIMAP's JSON: requests by req_id, pushes aside."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn.__enter__()  # websockets wants its connections used as context managers
        self.pushes: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def __enter__(self) -> WS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.__exit__(None, None, None)

    def receive(self, timeout: float = 30) -> dict[str, Any]:
        return json.loads(self.conn.recv(timeout=timeout))

    def send_raw(self, text: str) -> None:
        self.conn.send(text)

    def request(self, action: str, data: Any = None, timeout: float = 30) -> dict[str, Any]:
        req_id = f"r{next(self._ids)}"
        message: dict[str, Any] = {"req_id": req_id, "action": action}
        if data is not None:
            message["data"] = data
        self.conn.send(json.dumps(message))
        while True:
            reply = self.receive(timeout)
            if reply.get("req_id") == req_id:
                return reply
            self.pushes.append(reply)

    def result(self, action: str, data: Any = None) -> Any:
        reply = self.request(action, data)
        assert reply["action"] == "result", reply
        return reply["data"]

    def error(self, action: str, data: Any = None) -> str:
        reply = self.request(action, data)
        assert reply["action"] == "error", reply
        return reply["data"]

    def next_push(self, timeout: float = 30) -> dict[str, Any]:
        if self.pushes:
            return self.pushes.pop(0)
        return self.receive(timeout)


def _serve_in_thread(config: Config) -> Iterator[LiveWebRelay]:
    from relay.server import serve

    started: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    def main() -> None:
        async def run() -> None:
            async with trio.open_nursery() as nursery:
                listening = await nursery.start(partial(serve, config, log=Logger(level="warning")))
                started.put((listening.app, trio.lowlevel.current_trio_token(), nursery))

        try:
            trio.run(run)
        except BaseException as e:  # start-up failed: say so instead of hanging
            started.put(e)
        finally:
            stop.set()

    thread = threading.Thread(target=main, name="relay", daemon=True)
    thread.start()
    got = started.get(timeout=60)
    if isinstance(got, BaseException):
        raise got
    app, token, nursery = got
    try:
        yield LiveWebRelay(config, app, token)
    finally:
        trio.from_thread.run_sync(nursery.cancel_scope.cancel, trio_token=token)
        thread.join(timeout=30)


@pytest.fixture
def relay_config(tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    marker = request.node.get_closest_marker("webimap")
    keys = {"enabled": True, "send": True, **(marker.kwargs if marker else {})}
    config = make_config(tmp_path / "data", webimap=WebIMAP(**keys))
    limits = request.node.get_closest_marker("limits")
    if limits:
        config = dataclasses.replace(
            config, limits=dataclasses.replace(config.limits, **limits.kwargs)
        )
    return config


@pytest.fixture
def relay(relay_config: Config) -> Iterator[LiveWebRelay]:
    yield from _serve_in_thread(relay_config)


@pytest.fixture
def account(relay: LiveWebRelay) -> tuple[str, str]:
    """A logged-in account (its first REST login created it)."""
    acc = relay.new_account()
    assert relay.rest("GET", "/webimap/mailboxes", acc).status_code == 200
    return acc


def tls_context(relay: LiveWebRelay) -> ssl.SSLContext:
    return client_context(relay.config)
