"""mDNS announcements: <hostname>.local plus the invite page, IMAP and submission services,
at the box's IPv4 (A) and IPv6 (AAAA) addresses, answered over IPv4 and IPv6 multicast.

python-zeroconf's synchronous API runs its own asyncio loop in a thread, so it lives beside trio;
its blocking calls go through trio.to_thread. Addresses are re-checked every few seconds (DHCP
renewals, Wi-Fi roaming) and the services re-announced when they change; on shutdown they are
withdrawn with goodbye packets so browsers forget them at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
from zeroconf import IPVersion, ServiceInfo, Zeroconf

from hwctl import netinfo

INSTANCE = "Chatmail relay"
ADDRESS_POLL = 5.0

# (service type, listener name in the relay's status, TXT properties)
SERVICES = (
    ("_http._tcp.local.", "http", {"path": "/"}),
    ("_imaps._tcp.local.", "imaps", {}),
    ("_submissions._tcp.local.", "submissions", {}),
)


@dataclass(frozen=True)
class Announcement:
    hostname: str
    addresses: tuple[str, ...]
    ports: tuple[tuple[str, int], ...]  # listener name -> port, for the services announced

    def service_infos(self) -> list[ServiceInfo]:
        ports = dict(self.ports)
        infos = []
        for type_, listener, properties in SERVICES:
            if not ports.get(listener):
                continue
            infos.append(
                ServiceInfo(
                    type_,
                    f"{INSTANCE} {self.hostname}.{type_}",
                    parsed_addresses=list(self.addresses),  # A and AAAA records
                    port=ports[listener],
                    properties=properties,
                    server=f"{self.hostname}.local.",
                )
            )
        return infos


def responder() -> Zeroconf:
    """A responder on IPv4 and IPv6 multicast (224.0.0.251 and ff02::fb), so phones that ask
    over either find the box; IPv4 only where the kernel has no IPv6."""
    try:
        return Zeroconf(ip_version=IPVersion.All)
    except OSError:
        return Zeroconf(ip_version=IPVersion.V4Only)


class Announcer:
    """Owns one Zeroconf instance; every method blocks (call through trio.to_thread)."""

    def __init__(self) -> None:
        self.zc: Zeroconf | None = None
        self.current: Announcement | None = None
        self.infos: list[ServiceInfo] = []

    def apply(self, announcement: Announcement) -> None:
        if announcement == self.current:
            return
        # A fresh responder on every change: multicast group memberships are bound to the
        # interface addresses the instance saw at start, so reusing it after a change can
        # leave it deaf. Closing the old one sends goodbyes for the stale records.
        self.close()
        self.zc = responder()
        self.infos = announcement.service_infos()
        for info in self.infos:
            self.zc.register_service(info, allow_name_change=True)
        self.current = announcement

    def withdraw(self) -> None:
        if self.zc is not None:
            for info in self.infos:
                self.zc.unregister_service(info)
        self.infos = []
        self.current = None

    def close(self) -> None:
        if self.zc is not None:
            self.withdraw()
            self.zc.close()
            self.zc = None


async def announce(
    hostname: str, ports: dict[str, int], addresses_fn=netinfo.mdns_addresses
) -> None:
    """Keep the services announced until cancelled, following address changes."""
    announcer = Announcer()
    wanted = tuple(sorted((k, v) for k, v in ports.items() if k in {s[1] for s in SERVICES}))
    try:
        while True:
            addresses = tuple(addresses_fn())
            if addresses:
                announcement = Announcement(hostname, addresses, wanted)
                await trio.to_thread.run_sync(announcer.apply, announcement)
            elif announcer.current is not None:
                await trio.to_thread.run_sync(announcer.withdraw)
            await trio.sleep(ADDRESS_POLL)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(announcer.close)


async def announce_relay(controller, hostname: str) -> None:
    """Announce the relay's ports as its admin socket reports them, from the first status on."""
    while True:
        await controller.connected.wait()
        ports = controller.state.status.get("ports", {})
        if ports:
            await announce(hostname, ports)
        await trio.sleep(1)
