"""The local admin socket: newline-delimited JSON-RPC over a unix socket (mode 0600).

hwctl (display, LEDs, button) and later admin tools talk to the relay only through this socket.
Requests are one JSON object per line, `{"id": 1, "method": "status", "params": {}}`; answers carry
the same id and either "result" or "error". After `subscribe`, the connection also receives
notifications `{"method": "event", "params": {"type": "account_created", ...}}`.

Methods: status, new_onboarding (with the ss:// link when Shadowsocks is on), subscribe, factory_reset, identity_export, identity_import.

Factory reset survives a power cut at any moment: `factory_reset` only writes a flag file (durably)
and asks for a restart; `apply_pending_factory_reset`, called at start before the store opens,
deletes everything and removes the flag last, so an interrupted wipe simply runs again.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import trio

from relay import onboarding
from relay.app import App
from relay.config import Config
from relay.durable import fsync_directory, write_atomically
from relay.events import EventHub
from relay.outbound.queue_ops import QueueCommandError, admin_queue
from relay.shadowsocks.link import PASSWORD_FILE, proxy_url
from relay.store.clock import clock_confirmed
from relay.turn.service import RUNNING as TURN_RUNNING

RESET_FLAG = ".factory-reset"
MAX_LINE = 16 << 20  # an identity import carries every account (about 150 bytes each)
MAX_CONNECTIONS = 16
SEND_TIMEOUT = 10.0  # a client that stops reading its answers or events is dropped
PENDING_ONBOARDINGS = 32  # LAN credentials handed out and not used yet, newest kept
DISK_DEGRADED_PERCENT = 90


class RestartRequested(Exception):
    """Raised out of serve_admin after a factory reset or an identity restore: restart the relay.

    The wipe happens at the next start (apply_pending_factory_reset), before the store opens.
    """


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class AdminService:
    def __init__(self, app: App) -> None:
        self.app = app
        self.hub = EventHub()
        self.pending: list[str] = []  # LAN-mode onboarding addresses not used yet
        self.reset_requested = trio.Event()

    async def relay_store_events(self) -> None:
        """Turn the store's account events into admin events with onboarding context."""
        with self.app.events.subscribe() as events:
            async for event in events:
                if event["type"] == "account_created":
                    await self.account_created(event["addr"])

    async def account_created(self, addr: str) -> None:
        onboarded = addr in self.pending
        if onboarded:
            self.pending.remove(addr)
        try:
            accounts: int | None = await self.app.store.account_count()
        except Exception as e:  # a login must never fail because of this notification
            self.app.log.exception("admin-account-count-failed", e)
            accounts = None
        self.app.log.info("account-created", addr=self.app.log.redact(addr), accounts=accounts)
        self.hub.publish(
            {"type": "account_created", "addr": addr, "onboarding": onboarded, "accounts": accounts}
        )

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        if method == "status":
            return await self.status()
        if method == "new_onboarding":
            return self.new_onboarding()
        if method == "factory_reset":
            return self.factory_reset()
        if method == "identity_export":
            return await self.identity_export()
        if method == "identity_import":
            return await self.identity_import(params)
        if method == "queue":
            try:
                return await admin_queue(self.app, params)
            except QueueCommandError as e:
                raise RpcError(-32602, str(e)) from None
        raise RpcError(-32601, f"unknown method {method!r}")

    async def status(self) -> dict[str, Any]:
        config = self.app.config
        problems: list[str] = []
        state = "ok"
        try:
            accounts = await self.app.store.account_count()
        except Exception as e:  # the display must still be able to say what is wrong
            self.app.log.exception("admin-status-store", e)
            accounts, state = -1, "error"
            problems.append("store unavailable")
        # The display shows the first problem, so "data disk full" comes before the rest.
        problems += self.app.store.storage_problems()
        disk = disk_used_percent(config.data_dir)
        if disk >= DISK_DEGRADED_PERCENT and "data disk full" not in problems:
            problems.append(f"data disk {disk}% full")
        if not clock_confirmed():
            problems.append("clock not synced")
        if problems and state == "ok":
            state = "degraded"
        return {
            "name": socket.gethostname(),
            "domain": config.mail_domain,
            "address_domain": config.address_domain,
            "lan": config.is_lan,
            "accounts": accounts,
            "uptime": round(time.monotonic() - self.app.started_at),
            "health": {"state": state, "problems": problems},
            "disk_used_percent": disk,
            "push": push_status(self.app),
            "turn": turn_status(self.app),
            "iroh": self.app.iroh.status(),
            "shadowsocks": self.app.shadowsocks.status(self._port("shadowsocks")),
            "ports": config.listen.services(),
        }

    def _port(self, service: str) -> int | None:
        registry = self.app.services
        return registry.ports.get(service) if registry is not None else None

    def new_onboarding(self) -> dict[str, Any]:
        """The link a new user scans, and the `ss://` link (or None) for blocked networks."""
        config = self.app.config
        proxy = proxy_url(config)  # the port is open whenever configured (else no relay runs)
        if not config.is_lan:
            # Domain mode: one static link; the client asks /new for its credentials.
            url = onboarding.dcaccount_url(config)
            return {"mode": "dcaccount", "url": url, "addr": None, "proxy_url": proxy}
        addr, password = onboarding.new_credentials(config)
        self.pending.append(addr)
        del self.pending[:-PENDING_ONBOARDINGS]
        url = onboarding.dclogin_url(config, addr, password)
        return {"mode": "dclogin", "url": url, "addr": addr, "proxy_url": proxy}

    def factory_reset(self) -> dict[str, Any]:
        schedule_factory_reset(self.app.config)
        self.app.log.warning("factory-reset-scheduled")
        self.hub.publish({"type": "factory_reset"})
        self.reset_requested.set()
        return {"scheduled": True}

    async def identity_export(self) -> dict[str, Any]:
        """What a fresh box needs to become this relay again: config, keys, certificates and
        accounts (password hashes). Never mail. hwctl encrypts it before it leaves the box."""
        config = self.app.config
        files = {}
        for rel, path in _identity_files(config):
            files[rel] = base64.b64encode(path.read_bytes()).decode()
        accounts = await self.app.store.export_accounts()
        return {"domain": config.mail_domain, "files": files, "accounts": accounts}

    async def identity_import(self, params: dict[str, Any]) -> dict[str, Any]:
        """Restore an identity_export on this box, then restart to load keys and config."""
        config = self.app.config
        files = params.get("files")
        if not isinstance(files, dict):
            raise RpcError(-32602, "files missing")
        targets = {rel: path for rel, path in _identity_targets(config, files)}
        accounts = params.get("accounts") or []
        if accounts:
            await self.app.store.import_accounts(accounts)
        for rel, path in targets.items():
            write_atomically(path, base64.b64decode(files[rel]))
        self.app.log.warning("identity-restored", files=len(targets), accounts=len(accounts))
        self.reset_requested.set()  # same restart path as a reset, without the flag
        return {"restored": len(targets), "accounts": len(accounts)}


IDENTITY_DIRS = ("tls", "dkim", "acme")
# Generated secrets that users hold: the ss:// link in their apps must still work after a restore.
IDENTITY_FILES = (PASSWORD_FILE,)


def _identity_files(config: Config) -> list[tuple[str, Path]]:
    found = []
    if config.source is not None and Path(config.source).is_file():
        found.append(("config/relay.toml", Path(config.source)))
    for name in IDENTITY_DIRS:
        base = config.data_dir / name
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file():
                    found.append((f"{name}/{path.relative_to(base).as_posix()}", path))
    for name in IDENTITY_FILES:
        if (config.data_dir / name).is_file():
            found.append((name, config.data_dir / name))
    return found


def _identity_targets(config: Config, files: dict[str, Any]) -> list[tuple[str, Path]]:
    """Where each restored file goes; anything outside the identity directories is refused."""
    targets = []
    for rel in files:
        parts = Path(rel).parts
        if rel == "config/relay.toml" and config.source is not None:
            targets.append((rel, Path(config.source)))
        elif rel in IDENTITY_FILES:
            targets.append((rel, config.data_dir / rel))
        elif len(parts) >= 2 and parts[0] in IDENTITY_DIRS and ".." not in parts:
            if Path(rel).is_absolute():
                raise RpcError(-32602, f"refusing path {rel!r}")
            targets.append((rel, config.data_dir / rel))
        else:
            raise RpcError(-32602, f"refusing path {rel!r}")
    return targets


async def serve_admin(
    app: App, path: Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the admin socket at `path` until cancelled; raises RestartRequested after a reset."""
    service = AdminService(app)
    listener = await _bind_private(path)
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
    try:
        async with trio.open_nursery() as nursery:

            async def accept_loop() -> None:
                while True:
                    sock, _ = await listener.accept()
                    nursery.start_soon(_connection, service, trio.SocketStream(sock), limiter)

            nursery.start_soon(accept_loop)
            nursery.start_soon(service.relay_store_events)
            task_status.started()
            await service.reset_requested.wait()
            # Give the client the answer and subscribers the event before going down.
            await trio.sleep(0.2)
            raise RestartRequested("a factory reset or a restored identity needs a restart")
    finally:
        listener.close()
        path.unlink(missing_ok=True)


async def _bind_private(path: Path) -> trio.socket.SocketType:
    """Bind under a temporary name, restrict it to the owner, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(tmp))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    sock.listen(MAX_CONNECTIONS)
    return sock


async def _connection(service: AdminService, stream: trio.SocketStream, limiter) -> None:
    send_lock = trio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with send_lock:
            with trio.fail_after(SEND_TIMEOUT):
                await stream.send_all(json.dumps(message).encode() + b"\n")

    async def forward(events: trio.MemoryReceiveChannel[dict[str, Any]]) -> None:
        async with events:
            async for event in events:
                await send({"method": "event", "params": event})

    try:
        async with limiter, stream, trio.open_nursery() as nursery:
            buffer = b""
            while True:
                data = await stream.receive_some(4096)
                if not data:
                    break
                buffer += data
                if len(buffer) > MAX_LINE and b"\n" not in buffer:
                    await send(_error(None, -32600, "request too long"))
                    break
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        reply = await _answer(service, line, nursery, forward)
                        await send(reply)
            nursery.cancel_scope.cancel()
    except* (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        # The client went away or stopped reading. The nursery wraps this in a group, which
        # a plain except would miss, and it would end serve_admin and with it the relay.
        pass


async def _answer(service: AdminService, line: bytes, nursery, forward) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except ValueError:
        return _error(None, -32700, "not JSON")
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        return _error(None, -32600, "expected an object with a method")
    rid = request.get("id")
    params = request.get("params") or {}
    try:
        if request["method"] == "subscribe":
            nursery.start_soon(forward, service.hub.subscribe())
            return {"id": rid, "result": {"subscribed": True}}
        return {"id": rid, "result": await service.call(request["method"], params)}
    except RpcError as e:
        return _error(rid, e.code, str(e))
    except Exception as e:
        service.app.log.exception("admin-call-failed", e, method=request["method"])
        return _error(rid, -32603, "internal error")


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"id": rid, "error": {"code": code, "message": message}}


def disk_used_percent(path: Path) -> int:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return 0
    return round(100 * usage.used / usage.total) if usage.total else 0


def push_status(app: App) -> dict[str, Any]:
    """Notifications waiting to be sent, sent and given up since the start; off: not running."""
    notifier = app.push
    if notifier is None:
        return {"running": False}
    return {
        "running": True,
        "pending": notifier.pending,
        "sent": notifier.sent,
        "dropped": notifier.dropped,
    }


def turn_status(app: App) -> dict[str, Any]:
    """The built-in TURN server: its UDP port, allocations now, relayed since the start."""
    server = TURN_RUNNING.get(app.config.data_dir)
    if server is None:
        return {"running": False, "external": app.config.turn.external or None}
    stats = server.engine.stats
    return {
        "running": True,
        "port": server.port,
        "allocations": len(server.engine.by_client),
        "packets_relayed": stats.packets_relayed,
        "bytes_relayed": stats.bytes_relayed,
    }


# -- factory reset ------------------------------------------------------------------------------


def schedule_factory_reset(config: Config) -> None:
    """Write the reset flag durably; nothing is deleted until the next start."""
    flag = config.data_dir / RESET_FLAG
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_atomically(flag, f"requested {stamp}\n".encode())


def apply_pending_factory_reset(config: Config) -> bool:
    """If a reset is pending, wipe the data dir (accounts, mail, keys, certificates, local
    settings) and then remove the flag. Idempotent: a wipe cut short by power loss is redone.

    The config file the relay was started with is kept when it lives inside the data dir,
    or the relay could not start again; everything else there goes.
    """
    data_dir = config.data_dir.resolve()
    flag = data_dir / RESET_FLAG
    if not flag.exists():
        return False
    keep = {flag}
    if config.source is not None:
        source = Path(config.source).resolve()
        keep.add(source)
        keep.update(source.parents)
    _wipe(data_dir, keep)
    fsync_directory(data_dir)
    flag.unlink()
    fsync_directory(data_dir)
    return True


def _wipe(directory: Path, keep: set[Path]) -> None:
    for entry in directory.iterdir():
        if entry in keep:
            if entry.is_dir() and not entry.is_symlink():
                _wipe(entry, keep)
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
