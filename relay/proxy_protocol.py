"""The PROXY protocol (HAProxy's, versions 1 and 2), sans IO: the header a TCP load balancer
sends before the client's bytes, naming the client's address.

`parse(data)` looks at the first bytes of a connection and answers:
- None: not enough bytes yet to decide (read more, up to MAX_HEADER);
- a `ProxyHeader`: the header's `length` (the client's own bytes start there) and the client's
  `source` address, or None for a header that names none (v2 LOCAL, as in a balancer's health
  check; v1 UNKNOWN; a v2 family other than TCP over IPv4/IPv6): the connection's own address
  stands then;
- `ProxyError`: not a PROXY header, or a malformed one (the connection is closed).

Specification: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line (TCP6 with the largest addresses and ports), CRLF included
V2_FIXED = 16  # signature, version and command, family and protocol, length
V2_MAX_PAYLOAD = 2048  # addresses plus TLVs; HAProxy sends far less unless told to add much
MAX_HEADER = V2_FIXED + V2_MAX_PAYLOAD
V2_TCP4, V2_TCP6 = 0x11, 0x21
V2_LOCAL, V2_PROXY = 0x0, 0x1


class ProxyError(Exception):
    """Not a PROXY protocol header, or a malformed one; the message says which."""


@dataclass(frozen=True)
class Address:
    ip: str
    port: int


@dataclass(frozen=True)
class ProxyHeader:
    length: int  # bytes of the header; the client's stream starts after them
    source: Address | None  # None: the header names no client (use the connection's address)


def parse(data: bytes) -> ProxyHeader | None:
    if _starts_like(data, V2_SIGNATURE):
        return _parse_v2(data) if len(data) >= V2_FIXED else None
    if _starts_like(data, V1_PREFIX):
        return _parse_v1(data)
    raise ProxyError("not a PROXY protocol header")


def _starts_like(data: bytes, prefix: bytes) -> bool:
    n = min(len(data), len(prefix))
    return data[:n] == prefix[:n]


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyError(f"PROXY v1 line longer than {V1_MAX} bytes")
        return None
    try:
        words = data[:end].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyError("PROXY v1 line is not ASCII") from None
    length = end + 2
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return ProxyHeader(length, None)
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise ProxyError("PROXY v1 line is not 'PROXY TCP4|TCP6 src dst sport dport'")
    version = 4 if words[1] == "TCP4" else 6
    source = _v1_address(words[2], words[4], version)
    _v1_address(words[3], words[5], version)
    return ProxyHeader(length, source)


def _v1_address(ip: str, port: str, version: int) -> Address:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise ProxyError(f"PROXY v1: not an IP address: {ip[:45]!r}") from None
    if address.version != version:
        raise ProxyError(f"PROXY v1: {ip} is not an IPv{version} address")
    if not (port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise ProxyError(f"PROXY v1: not a port: {port[:8]!r}")
    return Address(client_ip(address), int(port))


def _parse_v2(data: bytes) -> ProxyHeader | None:
    version_command, family, payload_length = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        raise ProxyError(f"PROXY v2: unknown version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (V2_LOCAL, V2_PROXY):
        raise ProxyError(f"PROXY v2: unknown command {command}")
    if payload_length > V2_MAX_PAYLOAD:
        raise ProxyError(f"PROXY v2: header of {payload_length} bytes, at most {V2_MAX_PAYLOAD}")
    length = V2_FIXED + payload_length
    if len(data) < length:
        return None
    if command == V2_LOCAL:
        return ProxyHeader(length, None)
    payload = data[V2_FIXED:length]
    if family == V2_TCP4:
        if payload_length < 12:
            raise ProxyError("PROXY v2: TCP over IPv4 with fewer than 12 address bytes")
        ip, port = payload[0:4], struct.unpack_from("!H", payload, 8)[0]
    elif family == V2_TCP6:
        if payload_length < 36:
            raise ProxyError("PROXY v2: TCP over IPv6 with fewer than 36 address bytes")
        ip, port = payload[0:16], struct.unpack_from("!H", payload, 32)[0]
    else:  # UNSPEC, UDP, UNIX: the specification says to use the connection's own address
        return ProxyHeader(length, None)
    return ProxyHeader(length, Address(client_ip(ipaddress.ip_address(ip)), port))


def client_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An IPv4 client seen on an IPv6 socket (a balancer's, or the relay's own dual-stack one)
    as ::ffff:a.b.c.d is named as the IPv4 address it is, so it is counted as one client."""
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)
