"""What every connection-oriented service shares: who is calling, whether they may, and how long
they may take.

- `Peer`: the client's address as the services see it; `peer_of()` names an IPv4 client on a
  dual-stack socket (::ffff:a.b.c.d) by its IPv4 address, so it is one client on either socket.
- `open_listeners()`: the TCP listeners of one `[listen] address`; "::" is dual-stack
  (`serves_ipv4_too()`: unless an IPv4 address is configured besides it).
- `Admission`: one per-IP connection cap summed over every service (SMTP, IMAP, HTTP, ...), so a
  single address cannot hold `max_connections_per_ip` connections on each of them, and the
  per-account cap of logged-in sessions.
- `tls_handshake()`: the one server-side TLS handshake, with the one timeout, used for implicit
  TLS ports and for STARTTLS alike.
- `Deadline`: a deadline per command plus a minimum byte rate for bulk data (SMTP DATA, IMAP
  APPEND literals, HTTP bodies), so a client trickling bytes (slowloris) is cut off while a large
  message on a slow but moving link gets the time it needs.
- `close_after_refusal()`: the lingering close after a refusal sent mid-upload, so the client
  reads the reply instead of a connection reset.
- `receive_proxy_header()`: behind a load balancer, the client's address from the PROXY
  protocol header the balancer sends first (relay.proxy_protocol parses it).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import trio

from relay import proxy_protocol
from relay.proxy_protocol import ProxyError
from relay.ratelimit import ConnectionCounter

TLS_HANDSHAKE_TIMEOUT = 15.0
REFUSAL_LINGER = 2.0  # seconds a refused upload may go on arriving, unread, before the close
DISCARD_SIZE = 65536
PROXY_HEADER_TIMEOUT = 10.0  # a balancer sends its header at once


@dataclass(frozen=True)
class Peer:
    ip: str
    port: int


def peer_of(sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> Peer:
    """The client of an accepted socket, by the address its per-IP caps, throttles, rate limits
    and logs know it by: an IPv4 client that came to a dual-stack "::" socket is its IPv4
    address, as it is when it comes to a "0.0.0.0" one."""
    return Peer(ip=proxy_protocol.client_ip(ipaddress.ip_address(sockaddr[0])), port=sockaddr[1])


def serves_ipv4_too(address: str, all_addresses: Sequence[str]) -> bool:
    """Whether `address` of `[listen] address` also serves IPv4 clients: the unspecified IPv6
    address "::" does, unless an IPv4 address is configured besides it (that one's own socket
    serves IPv4 then, and the two would collide)."""
    wildcard = ipaddress.ip_address(address) == ipaddress.IPv6Address("::")  # "0::0" too
    return wildcard and all(ipaddress.ip_address(a).version == 6 for a in all_addresses)


async def open_listeners(
    address: str, port: int, *, all_addresses: Sequence[str]
) -> list[trio.SocketListener]:
    """Listen on `address`; where it `serves_ipv4_too()`, one socket takes both families
    (IPV6_V6ONLY off, which trio turns on for every IPv6 socket)."""
    if not serves_ipv4_too(address, all_addresses):
        return await trio.open_tcp_listeners(port, host=address)
    sock = trio.socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        await sock.bind((address, port))
        sock.listen(socket.SOMAXCONN)  # a deep accept queue, as trio gives its own listeners
    except BaseException:
        sock.close()
        raise
    return [trio.SocketListener(sock)]


@dataclass
class Admission:
    per_ip: ConnectionCounter = field(default_factory=ConnectionCounter)
    per_account: ConnectionCounter = field(default_factory=ConnectionCounter)

    def connection(self, peer: Peer, cap: int) -> AbstractContextManager[bool]:
        """Count a connection of any service while it lasts; False (nothing counted) beyond cap."""
        return self.per_ip.holding(peer.ip, cap)  # not wrapped: every open connection holds it


async def tls_handshake(
    stream: trio.abc.Stream, context: ssl.SSLContext
) -> trio.SSLStream[trio.abc.Stream] | None:
    """The server side of a TLS handshake; None if it failed or took too long (old protocol,
    wrong port, scanner, a client that never speaks)."""
    tls = trio.SSLStream(stream, context, server_side=True)
    with trio.move_on_after(TLS_HANDSHAKE_TIMEOUT):
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError:
            return None
        return tls
    return None


class Deadline:
    """The moment by which the current command must be complete.

    `restart(seconds)` starts the clock for a new command; `start_bulk(grace)` when its bulk data
    (a message) begins, and `extend_for(nbytes)` grants that data the time its bytes take at
    `min_rate` bytes per second, so the time allowed grows with what actually arrived, never
    with what a client announced.
    """

    def __init__(self, seconds: float, *, min_rate: int) -> None:
        self.min_rate = min_rate
        self.at = trio.current_time() + seconds
        self.in_bulk = False

    def restart(self, seconds: float) -> None:
        self.at = trio.current_time() + seconds
        self.in_bulk = False

    def start_bulk(self, grace: float) -> None:
        """Bulk data begins: from `grace` seconds on it must keep up `min_rate` on average, even
        if the command as a whole had longer (a trickled literal is cut off early)."""
        if not self.in_bulk:
            self.in_bulk = True
            self.at = min(self.at, trio.current_time() + grace)

    def extend_for(self, nbytes: int) -> None:
        self.at += nbytes / self.min_rate


async def close_after_refusal(stream: trio.abc.Stream, linger: float = REFUSAL_LINGER) -> None:
    """Close a connection whose client is still sending (an upload refused half-way).

    Closing at once with the client's bytes unread makes the kernel answer with a reset, which
    can destroy the refusal the client has not read yet: it would see "connection reset" instead
    of the reason. So the rest of the upload is read and thrown away (nothing is kept, nothing
    charged) until the client stops or `linger` seconds have passed, then the stream is closed.
    """
    with trio.move_on_after(linger):
        try:
            while await stream.receive_some(DISCARD_SIZE):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    with trio.move_on_after(linger):
        await trio.aclose_forcefully(stream)


class PrefixedStream(trio.abc.Stream):
    """A stream whose first bytes were read already (they came with the PROXY header)."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self.stream = stream
        self.prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if not self.prefix:
            return await self.stream.receive_some(max_bytes)
        n = len(self.prefix) if max_bytes is None else max_bytes
        data, self.prefix = self.prefix[:n], self.prefix[n:]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


def from_balancer(ip: str, proxy_from: Sequence[str]) -> bool:
    """Whether a connection from `ip` comes from one of the configured load balancers."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in _networks(tuple(proxy_from)))


@functools.lru_cache(maxsize=8)
def _networks(proxy_from: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in proxy_from]


async def receive_proxy_header(
    stream: trio.abc.Stream, peer: Peer
) -> tuple[trio.abc.Stream, Peer] | None:
    """Read the PROXY header a load balancer sends first: the client's stream (with any of its
    bytes that came along) and its address (the balancer's own for a header naming none, as a
    health check's). None when the connection closed before sending anything (a port probe);
    ProxyError when the header is missing, malformed, cut short or late."""
    data = b""
    with trio.move_on_after(PROXY_HEADER_TIMEOUT):
        while (header := proxy_protocol.parse(data)) is None:
            chunk = await stream.receive_some(proxy_protocol.MAX_HEADER - len(data))
            if not chunk and not data:
                return None
            if not chunk:
                raise ProxyError("connection closed before the end of the PROXY header")
            data += chunk
        rest = data[header.length :]
        if header.source is not None:
            peer = Peer(ip=header.source.ip, port=header.source.port)
        return (PrefixedStream(stream, rest) if rest else stream), peer
    raise ProxyError(f"no PROXY header within {PROXY_HEADER_TIMEOUT:g} s")
