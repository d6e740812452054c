"""`relay serve`: the composition root. It builds the App, declares every service once, runs them
in the service registry, and handles signals (reload on SIGHUP, clean stop on SIGTERM/SIGINT).

Nothing in relay/ imports this module; it imports everything. Signal handling is installed
before the store opens and before any port listens, so a SIGTERM at any moment after start ends
the relay cleanly (exit code 0) instead of killing it with the default action.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from relay import cli, sdnotify
from relay import config as config_mod
from relay.admin import RestartRequested, serve_admin
from relay.app import App
from relay.config import Config, ConfigError
from relay.config_edit import keep_restart_only, restart_required
from relay.core.admin.reset import apply_pending_factory_reset
from relay.core.admin.token import ensure_token
from relay.core.push import run_push
from relay.core.shared_secrets import sync_shared
from relay.core.update.updater import run_update_poll
from relay.durable import make_dirs
from relay.imap import session as imap
from relay.iroh.where import plain_listener_wanted as iroh_listener_wanted
from relay.log import Logger
from relay.net import Peer
from relay.onboarding import dclogin_url, new_credentials
from relay.outbound import run_outbound
from relay.services import Service, ServiceRegistry
from relay.shadowsocks import service as shadowsocks
from relay.smtp import session as smtp
from relay.start_refusal import clear as clear_start_refusal
from relay.start_refusal import refuse as refuse_start
from relay.store import open_store
from relay.store.compat import StoreTooNew
from relay.tls import TLSError, TLSManager
from relay.turn.service import built_in_wanted, serve_turn
from relay.web import server as web
from relay.web.acme import CertificateKeeper

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD = 1 << 20
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_admin_socket(
    app: App, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    await serve_admin(app, app.config.data_dir / "admin.sock", task_status=task_status)


async def run_certificate_keeper(
    app: App, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    await CertificateKeeper(app).run(task_status=task_status)


async def run_turn(
    app: App, *, task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED
) -> None:
    await serve_turn(app.config, app.log, task_status=task_status)


async def run_updater(
    app: App, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    await app.update.run(app, task_status=task_status)


async def handle_shadowsocks(stream: trio.abc.Stream, peer: Peer, app: App, service: str) -> None:
    """A connection to the Shadowsocks port; what it asks for is served by that service here."""
    registry = app.services
    assert registry is not None

    async def forward(name: str, proxied: trio.abc.Stream) -> None:
        await registry.serve(name, proxied, peer, admitted=True)  # counted as this connection

    config = app.config
    await shadowsocks.handle(
        stream, peer, config, registry.ports, app.shadowsocks, forward, app.log
    )


SERVICES = [
    Service("smtp", "tcp", "starttls", smtp.handle, smtp.TOO_MANY_CONNECTIONS),
    Service("submissions", "tcp", "implicit", smtp.handle, smtp.TOO_MANY_CONNECTIONS),
    Service("submission", "tcp", "starttls", smtp.handle, smtp.TOO_MANY_CONNECTIONS),
    Service("imaps", "tcp", "implicit", imap.handle, imap.TOO_MANY_CONNECTIONS),
    Service("imap", "tcp", "starttls", imap.handle, imap.TOO_MANY_CONNECTIONS),
    Service("https", "tcp", "implicit", web.handle, web.TOO_MANY_CONNECTIONS),
    Service("http", "tcp", "none", web.handle, web.TOO_MANY_CONNECTIONS),
    Service("admin", "task", run=run_admin_socket),
    Service("outbound", "task", run=run_outbound),
    Service("push", "task", run=run_push),
    Service("acme", "task", run=run_certificate_keeper),
    Service("turn", "task", run=run_turn),
    # Never stopped by a reload: an install must not be cut off halfway.
    Service("update", "task", run=run_updater),
    Service("update-poll", "task", run=run_update_poll),
    Service("iroh", "tcp", "none", web.handle, web.TOO_MANY_CONNECTIONS),
    # Beyond the per-IP cap it closes without a word, as it does for anything it refuses.
    Service("shadowsocks", "tcp", "none", handle_shadowsocks),
]


@dataclass
class Listening:
    """Where the services ended up listening (ports resolved when 0 was configured)."""

    ports: dict[str, int]
    app: App
    services: ServiceRegistry


def enabled_services(config: Config) -> dict[str, int | None]:
    """The services this configuration runs, in start order, with the port of each listener."""
    wanted: dict[str, int | None] = dict(config.listen.services())
    wanted |= {"admin": None, "outbound": None, "update": None}
    if config.update.url:
        wanted["update-poll"] = None
    if config.push.url:
        wanted["push"] = None
    if config.tls.mode == "acme":
        wanted["acme"] = None
    if built_in_wanted(config):
        wanted["turn"] = None
    if iroh_listener_wanted(config):
        wanted["iroh"] = config.iroh.port
    if config.shadowsocks.enabled and config.shadowsocks.port:  # last: its targets run by then
        wanted["shadowsocks"] = config.shadowsocks.port
    return wanted


async def serve(
    config: Config,
    *,
    log: Logger | None = None,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the relay until cancelled, or until SIGTERM/SIGINT when `handle_signals`.

    A stop signal during start-up ends the relay cleanly too; `task_status.started()` is then
    never called.
    """
    log = log or Logger(no_log=config.privacy.no_log)
    signals: AbstractContextManager[AsyncIterator[int] | None] = (
        trio.open_signal_receiver(*STOP_SIGNALS, signal.SIGHUP) if handle_signals else nullcontext()
    )
    with signals as receiver:
        async with trio.open_nursery() as nursery:
            running = _Running(log)
            if receiver is not None:
                nursery.start_soon(_signals, receiver, running, nursery.cancel_scope)
            await _serve(config, log, running, task_status)
            nursery.cancel_scope.cancel()


@dataclass
class _Running:
    log: Logger
    app: App | None = None  # None until the store is open


async def _serve(
    config: Config, log: Logger, running: _Running, task_status: trio.TaskStatus[Listening]
) -> None:
    return_big_buffers_to_the_os()
    make_dirs(config.data_dir)
    if apply_pending_factory_reset(config):
        log.warning("factory-reset-applied", data_dir=config.data_dir)
    tls = TLSManager(config)
    async with open_store(config, log) as store, trio.open_nursery() as nursery:
        clear_start_refusal(config.data_dir)  # the store it refused opens now
        app = running.app = App(config=config, store=store, tls=tls, log=log)
        registry = app.services = ServiceRegistry(app, nursery, SERVICES)
        app.reload = partial(reload, app)
        if config.store.backend == "postgresql":  # the cluster's secrets, before any service
            await sync_shared(config, store, tls, log)
        ensure_token(config)
        for name, port in enabled_services(config).items():
            try:
                await registry.start(name, port)
            except OSError as e:
                if name != "iroh":
                    raise
                # Realtime apps are an extra: a taken port must not keep mail from running.
                log.warning("iroh-listener-failed", port=port, error=str(e))
        nursery.start_soon(sdnotify.watchdog_loop)
        log.info("ready", services=",".join(registry.running))
        sdnotify.notify("READY=1")
        task_status.started(Listening(ports=registry.ports, app=app, services=registry))


async def _signals(receiver: AsyncIterator[int], running: _Running, stop: trio.CancelScope) -> None:
    async for signum in receiver:
        if signum == signal.SIGHUP:
            if running.app is not None:  # before the store is open there is nothing to reload
                await reload(running.app)
            continue
        running.log.info("shutdown", signal=signal.Signals(signum).name)
        sdnotify.notify("STOPPING=1")
        stop.cancel()
        return


def keep_startup_objects_out_of_gc() -> int:
    """Move every object alive after the start (modules, classes, functions, the config: some
    hundred thousand of them, never garbage) out of the cyclic garbage collector's reach.

    A full collection walks every tracked object; with them it stopped all connections for
    25-50 ms a few times a minute under load (the p99 of bench/mailflow). Returns how many
    objects were set aside."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def return_big_buffers_to_the_os() -> bool:
    """Make glibc map every allocation over 1 MiB separately, so it is unmapped when freed.

    Password hashing (Argon2id) takes 19 MiB per hash in worker threads; with glibc's sliding
    threshold those buffers stay in per-thread arenas for good, which costs a small board more
    memory than thousands of idle IMAP sessions. Returns whether the setting took effect.
    """
    libc = c_library()
    if libc is None or not hasattr(libc, "mallopt"):  # not glibc
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def c_library() -> ctypes.CDLL | None:
    """The C library this process runs on.

    find_library("c") asks ldconfig's cache (or a compiler), and the appliance image has neither;
    the C library is mapped into the process already, so the process's own symbols (dlopen of
    NULL) find it without a name, and glibc's soname is the last resort.
    """
    name = ctypes.util.find_library("c")
    for candidate in ([name] if name else []) + [None, "libc.so.6"]:
        try:
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    return None


# Services started and stopped by a reload as the config asks, each restarted when what it was
# started with changed. The listeners of [listen] and the admin socket stay as they are; a new
# Shadowsocks password or cipher holds for the next connections without a restart.
LIVE_SERVICES: dict[str, Callable[[Config, Config], bool]] = {
    "push": lambda old, new: old.push != new.push,
    "acme": lambda old, new: old.tls != new.tls,
    "turn": lambda old, new: old.turn != new.turn,
    "iroh": lambda old, new: old.iroh != new.iroh,
    "shadowsocks": lambda old, new: old.shadowsocks.port != new.shadowsocks.port,
    "update-poll": lambda old, new: old.update != new.update,
}


async def reload(app: App) -> dict[str, Any]:
    """Re-read the config file and certificates and apply them: services are started, stopped
    or restarted to match; on any error keep running as before."""
    source = app.config.source
    try:
        loaded = config_mod.load(source) if source else app.config
        new = keep_restart_only(app.config, loaded)  # what cannot change live waits for a restart
        app.tls.reload(new)
    except (ConfigError, TLSError) as e:
        app.log.error("reload-failed", error=str(e))
        return {"applied": False, "restart_required": [], "error": str(e)}
    old = app.config
    pending = restart_required(old, loaded)
    if pending:
        app.log.warning("reload-needs-restart", keys=",".join(pending))
    app.config = new
    app.store.config = app.config
    app.log.no_log = app.config.privacy.no_log
    error = await _match_services(app, old)
    app.log.info("reloaded")
    return {"applied": error is None, "restart_required": pending, "error": error}


async def _match_services(app: App, old: Config) -> str | None:
    """Start and stop the live services as app.config wants them; the first failure, if any."""
    registry = app.services
    if registry is None:
        return None
    wanted = enabled_services(app.config)
    error = None
    for name, changed_for in LIVE_SERVICES.items():
        changed = changed_for(old, app.config)
        if name in registry.running and (name not in wanted or changed):
            await registry.stop(name)
        if name in wanted and name not in registry.running:
            try:
                await registry.start(name, wanted[name])
            except OSError as e:
                app.log.warning("service-start-failed", service=name, error=str(e))
                error = error or f"{name}: {e}"
    return error


def main(argv: list[str] | None = None) -> int:
    """The `relay` command (its console script and `python -m relay`)."""
    return cli.main(argv, serve=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    restart, exit_status = True, 0
    while restart:  # a factory reset or restored identity restarts the relay in-process
        config = cli.load_or_embedded(args.config)
        log = Logger(no_log=config.privacy.no_log)

        banner: trio.TaskStatus[Listening] = _OnReady(
            _EmbeddedBanner(config) if args.config is None else trio.TASK_STATUS_IGNORED
        )
        restart = False
        try:
            trio.run(partial(serve, config, log=log, handle_signals=True, task_status=banner))
        except* RestartRequested:
            log.warning("restarting")
            restart = True
        except* StoreTooNew as refused:
            too_new = refused.exceptions[0]
            assert isinstance(too_new, StoreTooNew)
            exit_status = refuse_start(config.data_dir, str(too_new), too_new.panel)
    return exit_status


class _OnReady(trio.TaskStatus[Listening]):
    """What the relay process does once it listens, before passing the news on. (Not in serve():
    tests run many relays in one process, where the freeze would keep their garbage.)"""

    def __init__(self, then: trio.TaskStatus[Listening]) -> None:
        self.then = then

    def started(self, value: Listening | None = None) -> None:
        keep_startup_objects_out_of_gc()
        assert value is not None  # serve() always reports where it listens
        self.then.started(value)


class _EmbeddedBanner(trio.TaskStatus[Listening]):
    """Stands in for a task status: once the relay listens, print how to onboard."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def started(self, value: Listening | None = None) -> None:
        if value is not None:
            _print_embedded_banner(self.config, value.ports)


def _print_embedded_banner(config: Config, ports: dict[str, int]) -> None:
    addr, password = new_credentials(config)
    lines = [
        f"chatmail relay for {config.address_domain}, data in {config.data_dir}",
        *(f"  {service:<12} {config.url_host}:{port}" for service, port in ports.items()),
        "",
        "Onboard in Delta Chat: scan or paste this link (a fresh account, created at first login):",
        f"  {dclogin_url(config, addr, password)}",
        f"or open http://{config.url_host}:{ports.get('http', 0)}/ for the invite page.",
        f"Admin dashboard: https://{config.url_host}:{ports.get('https', 0)}/admin"
        " (log in with the token `relay admin-token` prints).",
        "Stop with Ctrl-C.",
    ]
    print("\n".join(lines), flush=True)
