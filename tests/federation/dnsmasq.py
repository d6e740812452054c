"""Debian's dnsmasq as the DNS server of a test network: A, MX and TXT records for `.test`."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dns.exception
import dns.resolver

from tests.helpers import free_ports, require_tool


@contextmanager
def run_dnsmasq(
    *,
    hosts: dict[str, str],
    mx: dict[str, str],
    txt: dict[str, list[str]],
    address: str = "127.0.0.1",
    port: int = 0,
) -> Iterator[str]:
    """Serve the records; yields "ip:port" ("[ipv6]:port") for `federation.resolver`. Port 0: a
    free one (53 only inside a network namespace of a test's own)."""
    binary = require_tool("dnsmasq")
    port = port or free_ports(1, address)[0]
    args = [
        binary,
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        f"--listen-address={address}",
        "--bind-interfaces",
        f"--port={port}",
        "--local=/test/",  # names under .test we do not know are NXDOMAIN, never forwarded
        "--user=root",
        "--log-facility=-",
    ]
    args += [f"--host-record={name},{ip}" for name, ip in hosts.items()]
    args += [f"--mx-host={domain},{host},10" for domain, host in mx.items()]
    # dnsmasq makes one character-string per comma-separated item (no commas in DKIM values)
    args += [f"--txt-record={name}," + ",".join(strings) for name, strings in txt.items()]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_until_answering(address, port, next(iter(hosts)))
        yield f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_answering(address: str, port: int, name: str, timeout: float = 10.0) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [address]
    resolver.port = port
    resolver.lifetime = 0.5
    deadline = time.monotonic() + timeout
    while True:
        try:
            resolver.resolve(name, "A")
            return
        except dns.exception.DNSException:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dnsmasq on {address}:{port} does not answer") from None
            time.sleep(0.05)
