"""mDNS seen from another machine: hwctl announces in one network namespace, a zeroconf browser
in a second one (joined by a veth pair; nothing leaves this machine) resolves the services (at
the box's IPv4 and IPv6 addresses) and the host name, sees the re-announcement after an address
change, and the goodbyes at shutdown. A second browser asks over IPv6 multicast only, as a phone
on an IPv6-only network does.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay import config as config_mod
from tests.helpers import make_config

ROOT = Path(__file__).resolve().parents[2]
NET = "10.251.77"  # only ever configured inside this test's own namespaces
NET6 = "fd77:251:77::"  # the same, for IPv6 (a unique local prefix)

BROWSER = r"""
import json, sys, time
from zeroconf import (
    AddressResolverIPv4, AddressResolverIPv6, IPVersion, ServiceBrowser, ServiceStateChange,
    Zeroconf,
)

host, duration, version = sys.argv[1], float(sys.argv[2]), sys.argv[3]
types = ["_http._tcp.local.", "_imaps._tcp.local.", "_submissions._tcp.local."]
zc = Zeroconf(ip_version=IPVersion.V6Only if version == "6" else IPVersion.V4Only)
Resolver = AddressResolverIPv6 if version == "6" else AddressResolverIPv4
seen = []

def on_change(zeroconf, service_type, name, state_change):
    # Runs on zeroconf's loop thread: only note it; resolving happens below.
    seen.append((service_type, name, state_change))

ServiceBrowser(zc, types, handlers=[on_change])
end = time.monotonic() + duration
last = {}
while time.monotonic() < end:
    while seen:
        service_type, name, change = seen.pop(0)
        record = {"event": change.name.lower(), "type": service_type, "name": name}
        if change is not ServiceStateChange.Removed:
            info = zc.get_service_info(service_type, name, timeout=3000)
            if info is not None:
                props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
                record.update(addresses=info.parsed_addresses(), port=info.port,
                              server=info.server, txt=props)
        print(json.dumps(record), flush=True)
    resolver = Resolver(host + ".local.")
    if resolver.request(zc, 1000):
        addresses = sorted(resolver.parsed_addresses())
        if addresses != last.get("host"):
            last["host"] = addresses
            print(json.dumps({"event": "host", "addresses": addresses}), flush=True)
    time.sleep(0.3)
zc.close()
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (ip netns)")
    tag = secrets.token_hex(3)
    a, b = f"hwmdns-a-{tag}", f"hwmdns-b-{tag}"
    try:
        ip("netns", "add", a)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        pytest.skip(f"`ip netns add` is not permitted here: {e}")
    try:
        ip("netns", "add", b)
        ip("link", "add", f"va{tag}", "netns", a, "type", "veth", "peer", f"vb{tag}", "netns", b)
        for ns, dev, host in ((a, f"va{tag}", 1), (b, f"vb{tag}", 2)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{NET}.{host}/24", "dev", dev)
            ip("-n", ns, "addr", "add", f"{NET6}{host}/64", "dev", dev, "nodad")
            ip("-n", ns, "link", "set", dev, "up", "multicast", "on")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        yield a, b, f"va{tag}"
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def reader(proc: subprocess.Popen, out: queue.Queue) -> None:
    for line in proc.stdout:
        out.put(json.loads(line))


def browse(namespace: str, hostname: str, version: str, procs: list) -> queue.Queue:
    """A browser over IPv4 or IPv6 multicast in `namespace`; its events arrive on the queue."""
    command = [sys.executable, "-c", BROWSER, hostname, "90", version]
    browser = subprocess.Popen(
        ["ip", "netns", "exec", namespace, *command], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    procs.append(browser)
    out: queue.Queue = queue.Queue()
    threading.Thread(target=reader, args=(browser, out), daemon=True).start()
    return out


def wait_events(out: queue.Queue, seen: list[dict], predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate(seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {what} within {timeout} s; browser saw: {seen}")
        with contextlib.suppress(queue.Empty):
            seen.append(out.get(timeout=left))


def test_browser_in_another_namespace_resolves_services_host_and_changes(
    namespaces: tuple[str, str, str], tmp_path: Path
) -> None:
    ns_box, ns_phone, box_dev = namespaces
    hostname = f"hwtest-{secrets.token_hex(3)}"
    config = make_config(tmp_path / "data")
    config_path = tmp_path / "relay.toml"
    config_path.write_text(config_mod.to_toml(config))
    sock = config.data_dir / "admin.sock"
    procs = []
    try:
        relay = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve", "--config", str(config_path)],
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )
        procs.append(relay)
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert time.monotonic() < deadline, "relay admin socket never appeared"
            time.sleep(0.1)
        hwctl_cmd = [sys.executable, "-m", "hwctl", "run", "--sim", str(tmp_path / "sim")]
        hwctl_cmd += ["--admin-socket", str(sock), "--mdns", "--hostname", hostname]
        hwctl = subprocess.Popen(["ip", "netns", "exec", ns_box, *hwctl_cmd], cwd=ROOT)
        procs.append(hwctl)
        out, out6 = (browse(ns_phone, hostname, version, procs) for version in "46")
        seen: list[dict] = []
        seen6: list[dict] = []

        def resolved(address: str):
            def check(events: list[dict]) -> bool:
                types = {e.get("type") for e in events if address in e.get("addresses", [])}
                types.discard(None)
                return len(types) == 3

            return check

        wait_events(out, seen, resolved(f"{NET}.1"), 30, "three resolved services")
        # ...at the box's IPv6 address too (AAAA), not only at its IPv4 one
        wait_events(out, seen, resolved(f"{NET6}1"), 15, "services with the IPv6 address")
        wait_events(out, seen, lambda ev: any(e["event"] == "host" for e in ev), 15, "host name")
        # ...and to a phone that asks over IPv6 multicast only
        wait_events(out6, seen6, resolved(f"{NET6}1"), 30, "services asked over IPv6")
        wait_events(out6, seen6, lambda ev: any(e["event"] == "host" for e in ev), 15, "AAAA")
        assert f"{NET6}1" in [e for e in seen6 if e["event"] == "host"][0]["addresses"]
        ports = {e["type"]: e["port"] for e in seen if "port" in e}
        assert ports == {
            "_http._tcp.local.": config.listen.http,
            "_imaps._tcp.local.": config.listen.imaps,
            "_submissions._tcp.local.": config.listen.submissions,
        }
        assert {e["server"] for e in seen if "server" in e} == {f"{hostname}.local."}
        assert f"{NET}.1" in [e for e in seen if e["event"] == "host"][0]["addresses"]
        http = next(e for e in seen if e.get("type") == "_http._tcp.local." and "txt" in e)
        assert http["txt"] == {"path": "/"}

        # DHCP hands the box a new address: the services follow it.
        # (Old one first: deleting a primary address also drops its secondaries.)
        ip("-n", ns_box, "addr", "del", f"{NET}.1/24", "dev", box_dev)
        ip("-n", ns_box, "addr", "add", f"{NET}.3/24", "dev", box_dev)
        wait_events(out, seen, resolved(f"{NET}.3"), 40, "services on the new address")

        # Shutdown withdraws everything at once (goodbye packets), no waiting for TTLs.
        hwctl.send_signal(signal.SIGINT)
        hwctl.wait(timeout=15)

        mark = len(seen)

        def withdrawn(events: list[dict]) -> bool:
            return len({e.get("type") for e in events[mark:] if e["event"] == "removed"}) == 3

        wait_events(out, seen, withdrawn, 15, "goodbyes for all three services")
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
