"""systemd readiness and watchdog notifications (a no-op outside systemd)."""

from __future__ import annotations

import os
import socket

import trio


def notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


async def watchdog_loop() -> None:
    """Ping systemd's watchdog at half its interval while the event loop is healthy."""
    usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    if not usec:
        return
    while True:
        notify("WATCHDOG=1")
        await trio.sleep(usec / 2e6)
