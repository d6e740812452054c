"""The TURN server's sockets: one UDP listener per listen address on `[turn] port` (and an
IPv4 one beside "::" where that serves IPv4 too, `udp_addresses()`), one UDP relay
socket per allocation from `[turn] relay_ports`, all driven by one `TurnEngine` in one trio task
per socket.

`serve_turn()` is the whole service (the composition root runs it from the service registry). It
reports the bound port through `task_status`, or None when the built-in server does not run: the
port off, an external TURN server configured, or the port taken (then an error is logged and
mail goes on; METADATA then offers no TURN server, and the apps fall back to their default).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from relay.config import Config
from relay.log import Logger
from relay.net import serves_ipv4_too

from .credentials import load_or_create_secret
from .engine import Close, Limits, Send, TurnEngine
from .stun import Address

EXPIRE_EVERY = 1.0
BIND_TRIES = 64
RECV_SIZE = 65535
_DOC_NET = "192.0.2.1"  # TEST-NET-1: a UDP connect() there finds the outgoing address, no packet


@dataclass
class TurnServer:
    """What runs: the engine and its sockets (admin status reads `engine.stats`)."""

    config: Config
    log: Logger
    engine: TurnEngine = field(init=False)
    nursery: trio.Nursery | None = None
    sockets: dict[Address, trio.socket.SocketType] = field(default_factory=dict)
    relay_scopes: dict[Address, trio.CancelScope] = field(default_factory=dict)
    listeners: dict[Address, str] = field(default_factory=dict)  # local -> bind address
    own_ips: set[str] = field(default_factory=set)
    service_ports: set[int] = field(default_factory=set)
    announced: dict[str, str] = field(default_factory=dict)  # bind address -> announced IP
    port: int = 0
    crashes: int = 0

    def __post_init__(self) -> None:
        turn = self.config.turn
        secret = load_or_create_secret(self.config.data_dir, turn.secret)
        limits = Limits(
            allocations_per_user=turn.allocations_per_user,
            allocations_per_ip=turn.allocations_per_ip,
            max_lifetime=turn.max_lifetime,
            bytes_per_second=turn.bytes_per_second,
        )
        self.engine = TurnEngine(
            realm=self.config.mail_domain,
            secret=secret,
            ports=self,
            limits=limits,
            peer_allowed=self.peer_allowed,
        )
        self.low, self.high = turn.relay_port_range()

    # -- the PortAllocator the engine uses -------------------------------------------------------

    def open(self, local: Address, family: int, even: bool = False) -> Address | None:
        bind_ip = self.listeners.get(local)
        if bind_ip is None or self.nursery is None:
            return None
        version = ipaddress.ip_address(bind_ip).version
        if (family == 1) != (version == 4):
            return None
        announce = self.announced[bind_ip]
        for _ in range(BIND_TRIES):
            port = random.randint(self.low, self.high)
            if even:
                port &= ~1
                if port < self.low:
                    continue
            if (announce, port) in self.sockets:
                continue
            raw = socket.socket(
                socket.AF_INET if version == 4 else socket.AF_INET6, socket.SOCK_DGRAM
            )
            try:
                raw.bind((bind_ip, port))
            except OSError:
                raw.close()
                continue
            raw.setblocking(False)
            sock = trio.socket.from_stdlib_socket(raw)
            relay = (announce, port)
            self.sockets[relay] = sock
            scope = trio.CancelScope()
            self.relay_scopes[relay] = scope
            self.nursery.start_soon(self._relay_reader, relay, sock, scope)
            return relay
        self.log.warning("turn-no-relay-port", range=self.config.turn.relay_ports)
        return None

    def close(self, relay: Address) -> None:
        scope = self.relay_scopes.pop(relay, None)
        if scope is not None:
            scope.cancel()
        sock = self.sockets.pop(relay, None)
        if sock is not None:
            sock.close()

    # -- which peers may be reached -------------------------------------------------------------

    def peer_allowed(self, ip: str, port: int) -> bool:
        turn = self.config.turn
        addr = ipaddress.ip_address(ip)
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if (str(addr), port) in self.engine.by_relay:
            return True  # another allocation of ours: relay to relay, as two relay-only clients do
        ours = str(addr) in self.own_ips or addr.is_loopback or addr.is_unspecified
        if ours and port in self.service_ports:
            return False  # never into the relay's own services
        if addr.is_loopback:
            return turn.allow_loopback_peers
        if addr.is_unspecified or addr.is_multicast or addr.is_link_local or addr.is_reserved:
            return False
        if isinstance(addr, ipaddress.IPv4Address) and addr == ipaddress.IPv4Address(
            "255.255.255.255"
        ):
            return False
        if not addr.is_global:
            return self.config.is_lan or turn.allow_private_peers
        return True

    # -- running ---------------------------------------------------------------------------------

    async def perform(self, actions: list[Send | Close]) -> None:
        for action in actions:
            if isinstance(action, Close):
                continue  # the engine already closed it through close()
            sock = self.sockets.get(action.via)
            if sock is None:
                continue
            # an unreachable peer or a full buffer: UDP, the media stream copes
            with contextlib.suppress(OSError):
                await sock.sendto(action.data, action.to)

    async def _listener(self, local: Address, sock: trio.socket.SocketType) -> None:
        engine = self.engine
        while True:
            try:
                data, src = await sock.recvfrom(RECV_SIZE)
            except OSError:
                continue
            try:
                actions = engine.from_client(local, (src[0], src[1]), data, time.time())
            except Exception as e:  # one datagram must never take the service down
                self._crashed(e)
                continue
            if actions:
                await self.perform(actions)

    async def _relay_reader(
        self, relay: Address, sock: trio.socket.SocketType, scope: trio.CancelScope
    ) -> None:
        engine = self.engine
        with scope:
            while True:
                try:
                    data, src = await sock.recvfrom(RECV_SIZE)
                except OSError:
                    if sock.fileno() < 0:
                        return
                    continue
                try:
                    actions = engine.from_peer(relay, (src[0], src[1]), data, time.time())
                except Exception as e:
                    self._crashed(e)
                    continue
                if actions:
                    await self.perform(actions)

    def _crashed(self, error: Exception) -> None:
        """Log the first crash and then every 1000th, so a bad peer cannot flood the log."""
        self.crashes += 1
        if self.crashes % 1000 == 1:
            self.log.exception("turn-datagram-crashed", error, count=self.crashes)

    async def _expiry(self) -> None:
        while True:
            await trio.sleep(EXPIRE_EVERY)
            self.engine.expire(time.time())


RUNNING: dict[Path, TurnServer] = {}  # data dir -> the server running for it (admin status)


def announced_address(config: Config, bind_ip: str) -> str:
    """The address put in XOR-RELAYED-ADDRESS for relay sockets bound to `bind_ip`."""
    if config.turn.relay_address:
        return config.turn.relay_address
    addr = ipaddress.ip_address(bind_ip)
    if not addr.is_unspecified:
        return bind_ip
    if config.is_lan and ipaddress.ip_address(config.mail_domain).version == addr.version:
        return config.mail_domain  # the LAN address of this family clients already reach
    return outgoing_address(addr.version) or bind_ip


def outgoing_address(version: int) -> str | None:
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    target = _DOC_NET if version == 4 else "2001:db8::1"
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((target, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return None


def ipv4_turn_address(config: Config) -> str | None:
    """An IPv4 address the TURN port answers on, for a client that cannot use an IPv6 one."""
    for bind in udp_addresses(config.listen.address):
        addr = ipaddress.ip_address(bind)
        if addr.version == 4:
            return outgoing_address(4) if addr.is_unspecified else bind
    return None


def udp_addresses(addresses: Sequence[str]) -> list[str]:
    """The addresses TURN's UDP sockets bind. Where "::" serves IPv4 too, as it does for TCP,
    IPv4 gets its own "0.0.0.0" socket beside the IPv6-only one: IPv4 clients then keep their
    IPv4 source address and get an IPv4 relayed address, never a mapped ::ffff: one."""
    extra = ["0.0.0.0"] if any(serves_ipv4_too(a, addresses) for a in addresses) else []
    return [*addresses, *extra]


def built_in_wanted(config: Config) -> bool:
    return config.turn.enabled and bool(config.turn.port) and not config.turn.external


async def serve_turn(
    config: Config,
    log: Logger,
    *,
    task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    if not built_in_wanted(config):
        task_status.started(None)
        return
    server = TurnServer(config, log)
    socks: list[tuple[Address, trio.socket.SocketType]] = []
    port = config.turn.port
    try:
        for address in udp_addresses(config.listen.address):
            version = ipaddress.ip_address(address).version
            sock = trio.socket.socket(
                socket.AF_INET if version == 4 else socket.AF_INET6, socket.SOCK_DGRAM
            )
            if version == 6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            await sock.bind((address, port))
            local = (address, sock.getsockname()[1])
            socks.append((local, sock))
            port = local[1]
    except OSError as e:
        for _, sock in socks:
            sock.close()
        log.error(
            "turn-port-unavailable",
            port=config.turn.port,
            error=errno.errorcode.get(e.errno or 0, str(e)),
        )
        task_status.started(None)
        return
    server.port = port
    server.own_ips = {a for a in config.listen.address} | {config.mail_domain}
    server.service_ports = set(config.listen.services().values()) | {port}
    for local, sock in socks:
        server.sockets[local] = sock
        server.listeners[local] = local[0]
        announce = announced_address(config, local[0])
        server.announced[local[0]] = announce
        server.own_ips.add(announce)
    RUNNING[config.data_dir] = server
    try:
        async with trio.open_nursery() as nursery:
            server.nursery = nursery
            for local, sock in socks:
                nursery.start_soon(server._listener, local, sock)
            nursery.start_soon(server._expiry)
            task_status.started(port)
    finally:
        server.nursery = None
        server.engine.close_all()
        for sock in list(server.sockets.values()):
            sock.close()
        server.sockets.clear()
        if RUNNING.get(config.data_dir) is server:
            del RUNNING[config.data_dir]
