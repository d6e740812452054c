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


def primary_ipv4() -> str | None:
    addresses = ipv4_addresses()
    return addresses[0] if addresses else None


def has_network() -> bool:
    return bool(ipv4_addresses())
