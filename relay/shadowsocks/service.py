"""The Shadowsocks port: decrypt, check the destination, hand the stream to the relay's service.

This is not a proxy to the internet. The destination a client asks for must be the relay
itself — its mail domain, one of its listen addresses, a loopback address or "localhost" — on
the port of one of its running TCP services (SMTP, submission, IMAP, HTTPS, ...). The decrypted
stream is then served in this process by that service, exactly as a connection to its own port
(`forward`, the service registry's one way to serve a connection), with the Shadowsocks
client's address as the peer: per-IP caps and login throttles count it. No loopback hop.

Probing resistance: until a first chunk has authenticated and named an allowed destination,
nothing is ever sent. Anything else — a short salt, a bad tag, a replayed salt, a bad address,
a refused destination, silence — leaves the connection open and read (and discarded) until
`probe_timeout` seconds after it was accepted, then closed: a prober sees a port that takes
bytes and never answers, whatever it sends.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import trio

from relay.config import Config
from relay.log import Logger
from relay.net import Peer

from . import link
from .aead import (
    CIPHERS,
    MAX_ADDRESS,
    AddressError,
    Decoder,
    DecryptError,
    Encoder,
    master_key,
    parse_address,
)
from .replay import SaltFilter

SERVICE = "shadowsocks"
RECEIVE_SIZE = 65536
LOCAL_NAMES = {"localhost"}

Forward = Callable[[str, trio.abc.Stream], Awaitable[None]]


@dataclass
class Shadowsocks:
    """What lives as long as the relay: the salt filter and counters (admin status)."""

    salts: SaltFilter = field(default_factory=SaltFilter)
    served: Counter[str] = field(default_factory=Counter)  # connections per target service
    refused: int = 0

    def status(self, port: int | None) -> dict[str, object]:
        return {
            "running": port is not None,
            "port": port,
            "connections": dict(self.served),
            "refused": self.refused,
        }


def is_own_host(config: Config, host: str) -> bool:
    name = host.lower().rstrip(".")
    if name in LOCAL_NAMES or name == config.mail_domain:
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return True
    return any(
        ip == listen and not listen.is_unspecified
        for listen in map(ipaddress.ip_address, config.listen.address)
    )


def route(config: Config, ports: Mapping[str, int], host: str, port: int) -> str | None:
    """The service a destination reaches, or None: not the relay, or no service of it there."""
    if not is_own_host(config, host):
        return None
    for name, listening in ports.items():
        if listening == port and name != SERVICE:
            return name
    return None


async def handle(
    tcp: trio.abc.Stream,
    peer: Peer,
    config: Config,
    ports: Mapping[str, int],
    state: Shadowsocks,
    forward: Forward,
    log: Logger,
) -> None:
    """One connection to the Shadowsocks port, until its proxied session ends."""
    cipher = CIPHERS[config.shadowsocks.cipher]
    try:
        password = link.password(config)
    except OSError as e:  # the registry would take it for the client going away: say it
        log.error("shadowsocks-password-unreadable", error=str(e))
        return
    master = master_key(password, cipher.key_size)
    deadline = trio.current_time() + config.shadowsocks.probe_timeout
    decoder = Decoder(cipher, master)
    plaintext = b""
    target: tuple[str, int] | None = None
    reason = "timeout"
    with trio.move_on_at(deadline):
        while target is None:
            data = await tcp.receive_some(RECEIVE_SIZE)
            if not data:
                return  # the client gave up; so do we, as any server would
            try:
                plaintext += decoder.decode(data)
            except DecryptError:
                reason = "bad-tag"
                break
            if not decoder.chunks:
                continue
            if decoder.salt in state.salts:
                reason = "replayed-salt"
                break
            try:
                parsed = parse_address(plaintext)
            except AddressError:
                reason = "bad-address"
                break
            if parsed is None:
                if len(plaintext) >= MAX_ADDRESS:
                    reason = "bad-address"
                    break
                continue
            host, port, used = parsed
            name = route(config, ports, host, port)
            assert decoder.salt is not None
            state.salts.add(decoder.salt)  # authenticated: never again, refused or not
            if name is None:
                reason = "destination"
                log.info("shadowsocks-refused", reason=reason, port=port, ip=log.redact(peer.ip))
                break
            plaintext = plaintext[used:]
            target = (name, port)
    if target is None:
        state.refused += 1
        if reason != "destination":  # unauthenticated: a probe or a wrong password, quietly
            log.debug("shadowsocks-refused", reason=reason, ip=log.redact(peer.ip))
        await _drain(tcp, deadline)
        return
    name = target[0]
    state.served[name] += 1
    encoder = Encoder(cipher, master)
    state.salts.add(encoder.salt)
    await forward(name, ProxiedStream(tcp, decoder, encoder, plaintext))


async def _drain(tcp: trio.abc.Stream, deadline: float) -> None:
    """Read and discard until the deadline or the client's end: answer nothing, close late."""
    with trio.move_on_at(deadline):
        while await tcp.receive_some(RECEIVE_SIZE):
            pass


class ProxiedStream(trio.abc.Stream):
    """The plaintext side of a Shadowsocks connection, as the relay's services see a socket."""

    def __init__(
        self, tcp: trio.abc.Stream, decoder: Decoder, encoder: Encoder, pending: bytes
    ) -> None:
        self.tcp = tcp
        self.decoder = decoder
        self.encoder = encoder
        self._pending = bytearray(pending)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.tcp.send_all(self.encoder.encode(bytes(data)))

    async def wait_send_all_might_not_block(self) -> None:
        await self.tcp.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._pending:
            data = await self.tcp.receive_some(RECEIVE_SIZE)
            if not data:
                if self.decoder.buffered:
                    raise trio.BrokenResourceError("the stream ended inside a chunk")
                return b""
            try:
                self._pending += self.decoder.decode(data)
            except DecryptError as e:
                raise trio.BrokenResourceError("a chunk did not authenticate") from e
        size = len(self._pending) if max_bytes is None else max_bytes
        out = bytes(self._pending[:size])
        del self._pending[:size]
        return out

    async def aclose(self) -> None:
        await self.tcp.aclose()
