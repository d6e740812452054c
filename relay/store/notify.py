"""In-process change notification for IMAP IDLE: one bounded channel per watcher, never blocking."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from .types import MailboxChange, ignore_change

RESYNC = MailboxChange("", "resync")


Wake = Callable[[], None]


class Notifier:
    def __init__(self, buffer: int = 256) -> None:
        self.buffer = buffer
        self._watchers: dict[str, dict[trio.MemorySendChannel[MailboxChange], Wake]] = {}

    @asynccontextmanager
    async def watch(
        self, addr: str, on_change: Wake = ignore_change
    ) -> AsyncIterator[trio.MemoryReceiveChannel[MailboxChange]]:
        """A channel of addr's changes; `on_change` is called after each is put in it (an IDLE
        session waits for its client and is woken by it, with no second task waiting)."""
        send, recv = trio.open_memory_channel[MailboxChange](self.buffer)
        self._watchers.setdefault(addr, {})[send] = on_change
        try:
            async with recv:
                yield recv
        finally:
            self._remove(addr, send)

    def publish(self, addr: str, change: MailboxChange) -> None:
        """Called by the writer after a change is durable. A consumer whose buffer is full gets
        a last "resync" event and its channel is closed: it must re-read the mailbox and watch
        again, while the writer never waits for it."""
        for send, on_change in list(self._watchers.get(addr, {}).items()):
            stats = send.statistics()
            try:
                if stats.current_buffer_used >= stats.max_buffer_size - 1:
                    send.send_nowait(RESYNC)
                    self._remove(addr, send)
                else:
                    send.send_nowait(change)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock):
                self._remove(addr, send)
            on_change()

    def wake_all(self) -> None:
        """Tell every watcher to re-read its mailboxes (changes may have been missed: the
        PostgreSQL store's LISTEN connection was lost for a while)."""
        for addr in list(self._watchers):
            self.publish(addr, RESYNC)

    def _remove(self, addr: str, send: trio.MemorySendChannel[MailboxChange]) -> None:
        watchers = self._watchers.get(addr)
        if watchers is not None and send in watchers:
            del watchers[send]
            send.close()
            if not watchers:
                del self._watchers[addr]
