"""The service registry: every part of the relay that runs is a `Service`, started and stopped
on its own while the relay runs.

A service is declared once (in relay/server.py, the composition root) with its transport, its TLS
mode and its code:
- "tcp": `handler(stream, peer, app, service)` is called once per connection, after admission
  (one per-IP cap over all services) and, for implicit TLS, after the handshake; behind a load
  balancer (`[listen] proxy_protocol`) its PROXY header is read first, so `peer` is the client;
- "task": `run(app, task_status)` is the whole service (the admin socket, the queue worker, the
  ACME keeper); it calls `task_status.started()` when it is ready.

`serve(name, stream, peer)` is the one way a connection is served: the tcp listeners call it
for their own connections, and the Shadowsocks service for the decrypted stream of a proxied
one (with its client's `peer`, already counted by admission).

Each running service has its own cancel scope inside the registry's nursery, so `stop(name)`
ends that service (its listeners and its connections) and nothing else. Connection handlers run
in the service's own nursery: a connection that crashes is logged with its traceback and never
takes the service or the relay down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Literal

import trio

from relay.net import (
    Peer,
    from_balancer,
    open_listeners,
    peer_of,
    receive_proxy_header,
    tls_handshake,
)
from relay.proxy_protocol import ProxyError

if TYPE_CHECKING:
    from relay.app import App

Transport = Literal["tcp", "task"]
TLSMode = Literal["implicit", "starttls", "none"]
ConnectionHandler = Callable[[trio.abc.Stream, Peer, "App", str], Awaitable[None]]
TaskRunner = Callable[..., Awaitable[None]]  # (app, *, task_status) -> None
BUSY_TIMEOUT = 5.0
CLOSE_TIMEOUT = 1.0


@dataclass(frozen=True)
class Service:
    name: str
    transport: Transport
    tls: TLSMode = "none"
    handler: ConnectionHandler | None = None  # tcp
    busy: bytes = b""  # tcp: what a client beyond the per-IP cap is told before the hang-up
    run: TaskRunner | None = None  # task

    def __post_init__(self) -> None:
        if (self.transport == "tcp") != (self.handler is not None) or (
            self.transport == "task"
        ) != (self.run is not None):
            raise ValueError(f"service {self.name}: a tcp service has a handler, a task a run")


@dataclass
class _Running:
    scope: trio.CancelScope
    done: trio.Event = field(default_factory=trio.Event)
    port: int | None = None


class ServiceRegistry:
    def __init__(self, app: App, nursery: trio.Nursery, services: list[Service]) -> None:
        self.app = app
        self.nursery = nursery
        self.services = {service.name: service for service in services}
        self.running: dict[str, _Running] = {}

    @property
    def ports(self) -> dict[str, int]:
        """Where each running tcp service listens (resolved when port 0 was configured)."""
        return {name: r.port for name, r in self.running.items() if r.port is not None}

    async def start(self, name: str, port: int | None = None) -> int | None:
        """Start a declared service (a tcp one on `port`); returns the bound port, if any."""
        if name in self.running:
            raise ValueError(f"service {name} is already running")
        service = self.services[name]
        running = _Running(trio.CancelScope())
        self.running[name] = running
        try:
            running.port = await self.nursery.start(self._run, service, port, running)
        except BaseException:
            self.running.pop(name, None)
            raise
        if running.port is not None:  # said as the port opens, not when every service is up
            addresses = ",".join(self.app.config.listen.address)
            self.app.log.info("listening", service=name, port=running.port, address=addresses)
        return running.port

    async def stop(self, name: str) -> None:
        """Stop a running service and wait until its listeners and connections are gone."""
        running = self.running.get(name)
        if running is None:
            return
        running.scope.cancel()
        await running.done.wait()

    async def _run(
        self,
        service: Service,
        port: int | None,
        running: _Running,
        *,
        task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with running.scope:
                if service.run is not None:
                    await service.run(self.app, task_status=task_status)
                else:
                    await self._listen(service, port or 0, task_status)
        finally:
            self.running.pop(service.name, None)
            running.done.set()

    async def _listen(
        self, service: Service, port: int, task_status: trio.TaskStatus[int | None]
    ) -> None:
        listeners: list[trio.SocketListener] = []
        addresses = self.app.config.listen.address
        for address in addresses:
            port = port or _same_port(listeners)
            listeners += await open_listeners(address, port, all_addresses=addresses)
        task_status.started(listeners[0].socket.getsockname()[1])
        # A partial, not a wrapping coroutine: one frame less held by every open connection.
        await trio.serve_listeners(partial(self._connection, service), listeners)

    async def _connection(self, service: Service, tcp: trio.SocketStream) -> None:
        try:
            peer = peer_of(tcp.socket.getpeername())
        except OSError:  # gone before we looked
            await trio.aclose_forcefully(tcp)
            return
        stream: trio.abc.Stream = tcp
        listen = self.app.config.listen
        if listen.proxy_protocol and from_balancer(peer.ip, listen.proxy_from):
            try:
                proxied = await receive_proxy_header(tcp, peer)
            except (ProxyError, trio.BrokenResourceError, OSError) as e:
                self.app.log.warning("proxy-header-refused", service=service.name, reason=str(e))
                proxied = None
            if proxied is None:
                await trio.aclose_forcefully(tcp)
                return
            stream, peer = proxied
        await self.serve(service.name, stream, peer)

    async def serve(
        self, name: str, stream: trio.abc.Stream, peer: Peer, *, admitted: bool = False
    ) -> None:
        """Serve one connection of service `name` on `stream`, and close it.

        The one way a connection is served, whether it came to the service's own port or
        through the Shadowsocks port (which passes its decrypted stream and its client's
        `peer`): admission against the per-IP cap (`admitted`: the caller's own connection
        already counts), the implicit TLS handshake, the handler, crash logging.
        """
        app = self.app
        service = self.services[name]
        assert service.handler is not None
        admission: AbstractContextManager[bool] = (
            nullcontext(True)
            if admitted
            else app.admission.connection(peer, app.config.limits.max_connections_per_ip)
        )
        try:
            with admission as ok:
                if service.tls == "implicit":
                    tls = await tls_handshake(stream, app.tls.context)
                    if tls is None:
                        return
                    stream = tls
                if not ok:
                    app.log.warning(
                        "too-many-connections", service=service.name, ip=app.log.redact(peer.ip)
                    )
                    with trio.move_on_after(BUSY_TIMEOUT):
                        await stream.send_all(service.busy)
                    return
                app.metrics.opened(service.name, peer.ip)
                try:
                    await service.handler(stream, peer, app, service.name)
                finally:
                    app.metrics.closed(service.name, peer.ip)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the peer went away; nothing to report
        except Exception as e:  # one connection must never take the relay down
            app.log.exception("connection-crashed", e, service=service.name)
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT) as scope:
                scope.shield = True
                await trio.aclose_forcefully(stream)


def _same_port(listeners: list[trio.SocketListener]) -> int:
    """Port 0 on several addresses: the first address's port for the others too."""
    return listeners[0].socket.getsockname()[1] if listeners else 0
