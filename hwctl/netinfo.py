"""The box's own addresses: for the info page, the "no network" LED state and mDNS."""

from __future__ import annotations

import ipaddress

import ifaddr


def ipv4_addresses() -> list[str]:
    """Non-loopback, non-link-local IPv4 addresses, sorted so the choice is stable."""
    found = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue
            addr = ipaddress.IPv4Address(ip.ip)
            if not (addr.is_loopback or addr.is_link_local):
                found.add(str(addr))
    return sorted(found, key=ipaddress.IPv4Address)


def ipv6_addresses() -> list[str]:
    """Non-loopback, non-link-local IPv6 addresses (global and ULA), sorted: a link-local one
    is of no use in a record, which cannot say the interface it belongs to."""
    found = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                continue
            addr = ipaddress.IPv6Address(ip.ip[0])
            if not (addr.is_loopback or addr.is_link_local):
                found.add(str(addr))
    return sorted(found, key=ipaddress.IPv6Address)


def mdns_addresses() -> list[str]:
    """What mDNS announces for the box: its IPv4 addresses (A), then its IPv6 ones (AAAA)."""
    return ipv4_addresses() + ipv6_addresses()


def primary_ipv4() -> str | None:
    addresses = ipv4_addresses()
    return addresses[0] if addresses else None


def has_network() -> bool:
    return bool(ipv4_addresses())
