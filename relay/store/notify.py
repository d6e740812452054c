"""In-process change notification for IMAP IDLE: one bounded channel per watcher, never blocking."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .types import MailboxChange

RESYNC = MailboxChange("", "resync")


class Notifier:
    def __init__(self, buffer: int = 256) -> None:
        self.buffer = buffer
        self._watchers: dict[str, set[trio.MemorySendChannel[MailboxChange]]] = {}

    @asynccontextmanager
    async def watch(self, addr: str) -> AsyncIterator[trio.MemoryReceiveChannel[MailboxChange]]:
        send, recv = trio.open_memory_channel[MailboxChange](self.buffer)
        self._watchers.setdefault(addr, set()).add(send)
        try:
            async with recv:
                yield recv
        finally:
            self._remove(addr, send)

    def publish(self, addr: str, change: MailboxChange) -> None:
        """Called by the writer after a change is durable. A consumer whose buffer is full gets
        a last "resync" event and its channel is closed: it must re-read the mailbox and watch
        again, while the writer never waits for it."""
        for send in list(self._watchers.get(addr, ())):
            stats = send.statistics()
            try:
                if stats.current_buffer_used >= stats.max_buffer_size - 1:
                    send.send_nowait(RESYNC)
                    self._remove(addr, send)
                else:
                    send.send_nowait(change)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock):
                self._remove(addr, send)

    def wake_all(self) -> None:
        """Tell every watcher to re-read its mailboxes (changes may have been missed: the
        PostgreSQL store's LISTEN connection was lost for a while)."""
        for addr in list(self._watchers):
            self.publish(addr, RESYNC)

    def _remove(self, addr: str, send: trio.MemorySendChannel[MailboxChange]) -> None:
        watchers = self._watchers.get(addr)
        if watchers is not None and send in watchers:
            watchers.discard(send)
            send.close()
            if not watchers:
                del self._watchers[addr]
