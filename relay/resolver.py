"""Where mail for a domain goes: MX lookup, implicit MX, null MX and domain literals.

Every lookup goes through dnspython's async resolver (it runs on trio), pointed at the configured
server or at /etc/resolv.conf. Host names are resolved here too, so that tests and private
networks need nothing but that one DNS server.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from relay.config import Federation

DNS_LIFETIME = 30.0


@dataclass(frozen=True)
class Target:
    """One mail exchanger: the name TLS checks, and the addresses to connect to."""

    host: str
    addresses: tuple[str, ...]
    literal: bool = False  # reached through a domain literal: nothing to verify a certificate by


class RouteError(Exception):
    """No route to a domain; `reply` is the SMTP reply line that explains it."""

    def __init__(self, reply: str, *, permanent: bool):
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent


_resolvers: dict[str, dns.asyncresolver.Resolver] = {}


def resolver(fed: Federation) -> dns.asyncresolver.Resolver:
    """A resolver for the configured server ("ip", "ip:port", "[ipv6]:port"), or the system one."""
    key = fed.resolver
    if key not in _resolvers:
        if key:
            host, port = _server_address(key)
            r = dns.asyncresolver.Resolver(configure=False)
            r.nameservers = [host]
            r.port = port
        else:
            r = dns.asyncresolver.Resolver()
        r.lifetime = DNS_LIFETIME
        _resolvers[key] = r
    return _resolvers[key]


def _server_address(text: str) -> tuple[str, int]:
    """(address, port) of "192.0.2.53", "192.0.2.53:5353", "2001:db8::53" or "[2001:db8::53]:5353"
    (a bare IPv6 address has colons of its own: its port needs the brackets)."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        return host, int(port.removeprefix(":") or 53)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, 53


def literal_address(domain: str) -> str | None:
    """The IP of a domain literal like "[192.0.2.1]" or "[IPv6:2001:db8::1]", else None."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


async def find_targets(domain: str, fed: Federation) -> list[Target]:
    """The exchangers for `domain`, best first; raises RouteError like the official relay."""
    ip = literal_address(domain)
    if ip is not None:
        return [Target(host=ip, addresses=(ip,), literal=True)]
    if domain.startswith("["):
        raise RouteError(f"501 5.1.3 Bad domain literal {domain}", permanent=True)
    res = resolver(fed)
    try:
        answer = await res.resolve(dns.name.from_text(domain), "MX")
        records = sorted(answer, key=lambda mx: mx.preference)
        if all(mx.exchange == dns.name.root for mx in records):
            raise RouteError(
                "556 5.1.10 Permanent failure: Recipient address has null MX", permanent=True
            )
        hosts = [mx.exchange.to_text(omit_final_dot=True) for mx in records]
    except dns.resolver.NXDOMAIN:
        raise RouteError(f"512 Domain {domain} does not exist", permanent=True) from None
    except dns.resolver.NoAnswer:
        hosts = [domain]  # RFC 5321 5.1: no MX record, the domain is its own exchanger
    except (dns.exception.DNSException, ValueError):
        raise RouteError(f"421 DNS resolution failed for {domain}", permanent=False) from None
    targets = []
    for host in hosts:
        addresses = await host_addresses(host, fed)
        if addresses:
            targets.append(Target(host=host, addresses=tuple(addresses)))
    if not targets:
        raise RouteError(f"421 DNS resolution failed for {domain}", permanent=False)
    return targets


async def host_addresses(host: str, fed: Federation) -> list[str]:
    """IPv4 first, then IPv6: most small relays have working IPv4 only."""
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver(fed).resolve(dns.name.from_text(host), rdtype)
        except (dns.exception.DNSException, ValueError):
            continue
        found += [r.to_text() for r in answer]
    return found


async def txt_record(name: str, fed: Federation) -> bytes | None:
    """The first TXT record at `name` with its strings joined (how DKIM keys are split)."""
    try:
        answer = await resolver(fed).resolve(dns.name.from_text(name), "TXT")
    except (dns.exception.DNSException, ValueError):
        return None
    for record in answer:
        return b"".join(record.strings)
    return None
