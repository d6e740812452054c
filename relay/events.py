"""In-process fan-out of relay events (account created, factory reset) to local listeners."""

from __future__ import annotations

from typing import Any

import trio

EVENT_BUFFER = 64


class EventHub:
    """Publishing never blocks: a subscriber that does not keep up is dropped."""

    def __init__(self) -> None:
        self.subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = set()

    def subscribe(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](EVENT_BUFFER)
        self.subscribers.add(send)
        return receive

    def publish(self, event: dict[str, Any]) -> None:
        for send in list(self.subscribers):
            try:
                send.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.subscribers.discard(send)
                send.close()
