"""`relay serve`: every listener in one trio process, with reload and clean shutdown.

The server owns sockets and TLS for implicit-TLS ports; everything that happens inside a
connection belongs to the protocol modules, which all expose the same `handle()`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import importlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from relay import config as config_mod
from relay import sdnotify
from relay.app import App
from relay.config import Config, ConfigError
from relay.log import Logger
from relay.tls import TLSError, TLSManager

# Listener name -> (module with handle(), implicit TLS?)
SERVICES: dict[str, tuple[str, bool]] = {
    "smtp": ("relay.smtp.session", False),
    "submissions": ("relay.smtp.session", True),
    "submission": ("relay.smtp.session", False),
    "imaps": ("relay.imap.session", True),
    "imap": ("relay.imap.session", False),
    "https": ("relay.web.server", True),
    "http": ("relay.web.server", False),
}
TLS_HANDSHAKE_TIMEOUT = 15.0
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD = 1 << 20

Handler = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Peer:
    ip: str
    port: int


@dataclass
class Listening:
    """Where the services ended up listening (ports resolved when 0 was configured)."""

    ports: dict[str, int]
    app: App


async def serve(
    config: Config,
    *,
    log: Logger | None = None,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the relay until cancelled, or until SIGTERM/SIGINT when `handle_signals`."""
    from relay.admin import apply_pending_factory_reset, serve_admin
    from relay.federation import run_outbound
    from relay.store import open_store

    log = log or Logger(no_log=config.privacy.no_log)
    return_big_buffers_to_the_os()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if apply_pending_factory_reset(config):
        log.warning("factory-reset-applied", data_dir=config.data_dir)
    tls = TLSManager(config)
    async with open_store(config, log) as store, trio.open_nursery() as nursery:
        app = App(config=config, store=store, tls=tls, log=log)
        ports = {}
        for service, port in config.listen.services().items():
            ports[service] = await nursery.start(_listen, app, service, port)
        await nursery.start(serve_admin, app, config.data_dir / "admin.sock")
        await nursery.start(run_outbound, app)
        if config.tls.mode == "acme":
            from relay.web.acme import CertificateKeeper

            await nursery.start(CertificateKeeper(app).run)
        if handle_signals:
            nursery.start_soon(_signals, app, nursery.cancel_scope)
        nursery.start_soon(sdnotify.watchdog_loop)
        for service, port in ports.items():
            log.info(
                "listening", service=service, port=port, address=",".join(config.listen.address)
            )
        sdnotify.notify("READY=1")
        task_status.started(Listening(ports=ports, app=app))


def return_big_buffers_to_the_os() -> None:
    """Make glibc map every allocation over 1 MiB separately, so it is unmapped when freed.

    Password hashing (Argon2id) takes 19 MiB per hash in worker threads; with glibc's sliding
    threshold those buffers stay in per-thread arenas for good, which costs a small board more
    memory than thousands of idle IMAP sessions.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "mallopt"):  # glibc only
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


async def _listen(
    app: App,
    service: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    module, implicit_tls = SERVICES[service]
    handler: Handler = importlib.import_module(module).handle
    listeners: list[trio.SocketListener] = []
    for address in app.config.listen.address:
        listeners += await trio.open_tcp_listeners(port, host=address)
    bound = listeners[0].socket.getsockname()[1]

    async def on_connection(tcp: trio.SocketStream) -> None:
        stream: trio.abc.Stream = tcp
        try:
            ip, peer_port = tcp.socket.getpeername()[:2]
            if implicit_tls:
                tls = await _tls_accept(app, tcp)
                if tls is None:
                    return
                stream = tls
            await handler(stream, Peer(ip=ip, port=peer_port), app, service=service)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the peer went away; nothing to report
        except Exception as e:  # one connection must never take the relay down
            app.log.error("connection-crashed", service=service, error=repr(e))
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await trio.aclose_forcefully(stream)

    task_status.started(bound)
    await trio.serve_listeners(on_connection, listeners)


async def _tls_accept(app: App, stream: trio.SocketStream) -> trio.SSLStream | None:
    tls_stream = trio.SSLStream(stream, app.tls.context, server_side=True)
    with trio.move_on_after(TLS_HANDSHAKE_TIMEOUT):
        try:
            await tls_stream.do_handshake()
        except trio.BrokenResourceError:
            return None  # failed handshake: old protocol, wrong port, scanner
        return tls_stream
    return None


async def _signals(app: App, cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as receiver:
        async for signum in receiver:
            if signum == signal.SIGHUP:
                reload(app)
                continue
            app.log.info("shutdown", signal=signal.Signals(signum).name)
            sdnotify.notify("STOPPING=1")
            cancel_scope.cancel()
            return


def reload(app: App) -> bool:
    """Re-read the config file and certificates; on any error keep running as before."""
    source = app.config.source
    try:
        new = config_mod.load(source) if source else app.config
        app.tls.reload(new)
    except (ConfigError, TLSError) as e:
        app.log.error("reload-failed", error=str(e))
        return False
    fixed = {"listen": new.listen, "data_dir": new.data_dir, "mail_domain": new.mail_domain}
    changed = [key for key, value in fixed.items() if value != getattr(app.config, key)]
    if changed:
        app.log.warning("reload-needs-restart", keys=",".join(changed))
    keep = {key: getattr(app.config, key) for key in fixed}
    app.config = dataclasses.replace(new, **keep)
    app.store.config = app.config
    app.log.no_log = app.config.privacy.no_log
    app.log.info("reloaded")
    return True
