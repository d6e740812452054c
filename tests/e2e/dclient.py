"""Drive the real Delta Chat core (PyPI deltachat-rpc-server) against a relay process.

The rpc client blocks forever on every call and every event wait; everything here puts a bound
on those waits, keeps the events a test did not ask for yet (so none is lost while waiting for
another), and tears the server down even when a call is stuck.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

from deltachat_rpc_client import Account, DeltaChat, Rpc
from deltachat_rpc_client._utils import AttrDict

from relay.config import Config
from tests.helpers import Reachable, RelayProcess, start_relay_process, stop_relay_process

DEFAULT_TIMEOUT = 60.0
RECENT_EVENTS = 40  # kept per profile for the failure message
CORE_LOG_LINES = 5000  # the core's Info lines, kept per profile for `logged()`


def rpc_server_path() -> str | None:
    """The binary from the deltachat-rpc-server wheel: next to this Python first, then PATH."""
    beside = Path(sys.executable).parent / "deltachat-rpc-server"
    return str(beside) if beside.exists() else shutil.which("deltachat-rpc-server")


class LiveRelay(Reachable):
    """`relay serve --config F` as a child process that a test may stop and start again."""

    def __init__(self, config: Config, workdir: Path) -> None:
        self.config = config
        self.config_path = workdir / "relay.toml"
        self.log_path = workdir / "relay.log"
        self.process: RelayProcess | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = start_relay_process(
                self.config, self.config_path, stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        if self.process is not None:
            stop_relay_process(self.process)
            self.process = None

    def restart(self, crash: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL when `crash`) and start again on the same ports and data."""
        if crash and self.process is not None:
            self.process.process.kill()
            self.process.process.wait(10)
        self.stop()
        self.start()

    def new_account(self, timeout: float = 10.0) -> dict[str, Any]:
        """POST /new on the plain HTTP port, as the invite page's link does in LAN mode."""
        url = f"http://{self.config.url_host}:{self.port('http')}/new"
        request = urllib.request.Request(url, data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class DCClient:
    """One deltachat-rpc-server process with its accounts directory."""

    def __init__(self, accounts_dir: Path, server_path: str, stderr_path: Path) -> None:
        self._stderr = stderr_path.open("ab")
        self.rpc = Rpc(
            accounts_dir=str(accounts_dir), rpc_server_path=server_path, stderr=self._stderr
        )
        self.dc = DeltaChat(self.rpc)
        # Calls run here so a test can stop waiting for one; close() then fails it.
        self._calls = concurrent.futures.ThreadPoolExecutor(max_workers=4)

    def start(self, timeout: float = 30.0) -> None:
        self._calls.submit(self.rpc.start).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Run one blocking rpc call, giving up after `timeout` seconds."""
        try:
            return self._calls.submit(fn, *args).result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"rpc call {getattr(fn, '__name__', fn)} took over {timeout} s"
            ) from None

    def close(self) -> None:
        try:
            # close() stops io of every account, then the process; bounded like any call
            self._calls.submit(self.rpc.close).result(30)
        except Exception:  # stuck or already dead: make sure the process is gone
            process = getattr(self.rpc, "process", None)
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
        finally:
            self._calls.shutdown(wait=False, cancel_futures=True)
            self._stderr.close()

    def add_profile(self, name: str, relay: LiveRelay, timeout: float = DEFAULT_TIMEOUT) -> Profile:
        """A profile set up as a user does: /new, then the dclogin link it hands out."""
        answer = relay.new_account()
        account = self.call(self.dc.add_account)
        profile = Profile(name, account, answer["email"], answer["password"], self)
        self.call(account.set_config, "displayname", name)
        self.call(account.add_transport_from_qr, answer["dclogin_url"], timeout=timeout)
        profile.go_online(timeout)
        return profile


@dataclass
class Profile:
    name: str
    account: Account = field(repr=False)
    addr: str
    password: str = field(repr=False)
    client: DCClient = field(repr=False)
    pending: list[AttrDict] = field(default_factory=list, repr=False)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS), repr=False)
    # (time.monotonic() when seen, line): the core's Info lines, for `logged()` and timings
    core_log: deque[tuple[float, str]] = field(
        default_factory=lambda: deque(maxlen=CORE_LOG_LINES), repr=False
    )

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        return self.client.call(fn, *args, timeout=timeout)

    def go_online(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.call(self.account.start_io)
        self.wait_for("ImapInboxIdle", timeout=timeout)

    def go_offline(self) -> None:
        self.call(self.account.stop_io)

    def wait_for(
        self,
        kind: str,
        where: Callable[[AttrDict], bool] = lambda event: True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> AttrDict:
        """The next event of `kind` matching `where`; other events stay for later waits."""
        for i, event in enumerate(self.pending):
            if event.kind == kind and where(event):
                return self.pending.pop(i)
        queue = self.client.rpc.get_queue(self.account.id)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = AttrDict(queue.get(timeout=remaining))
            except Empty:
                break
            self.recent.append(_describe(event))
            if event.kind == kind and where(event):
                return event
            if event.kind == "Info":
                self.core_log.append((time.monotonic(), event.msg))
            elif event.kind != "Warning":  # log lines are many; keep only state
                self.pending.append(event)
        recent = "\n  ".join(self.recent)
        raise TimeoutError(
            f"{self.name}: no {kind} event within {timeout} s; last events:\n  {recent}"
        )

    def logged(self, text: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The core's Info log line containing `text`, already seen or coming."""
        for _, line in self.core_log:
            if text in line:
                return line
        return self.wait_for("Info", lambda event: text in event.msg, timeout).msg

    def wait_incoming(
        self, where: Callable[[Any], bool] = lambda snapshot: True, timeout: float = DEFAULT_TIMEOUT
    ) -> Any:
        """The snapshot of the next incoming message that `where` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.wait_for("IncomingMsg", timeout=max(0.1, deadline - time.monotonic()))
            snapshot = self.call(self.account.get_message_by_id(event.msg_id).get_snapshot)
            if where(snapshot):
                return snapshot

    def wait_message(
        self, msg_id: int, where: Callable[[Any], bool], timeout: float = DEFAULT_TIMEOUT
    ) -> Any:
        """The snapshot of message `msg_id` once `where` accepts it (checked on each change)."""
        message = self.account.get_message_by_id(msg_id)
        deadline = time.monotonic() + timeout
        while not where(snapshot := self.call(message.get_snapshot)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: message {msg_id} still {snapshot!r}")
            with contextlib.suppress(TimeoutError):
                self.wait_for("MsgsChanged", lambda e: e.msg_id in (0, msg_id), min(remaining, 1))
        return snapshot

    def securejoin(self, inviter: Profile, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Scan `inviter`'s contact QR and wait until both sides report success."""
        qr = inviter.call(inviter.account.get_qr_code)
        self.call(self.account.secure_join, qr)
        inviter.wait_for("SecurejoinInviterProgress", lambda e: e.progress == 1000, timeout)
        self.wait_for("SecurejoinJoinerProgress", lambda e: e.progress == 1000, timeout)

    def chat_with(self, other: Profile) -> Any:
        contact = self.call(self.account.get_contact_by_addr, other.addr)
        assert contact is not None, f"{self.name} has no contact {other.name}"
        return self.call(contact.create_chat)

    def connectivity_html(self) -> str:
        return self.call(self.client.rpc.get_connectivity_html, self.account.id)


def _describe(event: AttrDict) -> str:
    detail = event.get("msg") or {k: v for k, v in event.items() if k != "kind"}
    return f"{event.kind}: {str(detail)[:200]}"
