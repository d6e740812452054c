"""The push notifier: wakes a recipient's phones when mail reaches their INBOX.

The official relay's notifier, in trio. Items (one per live device token of each recipient who
did not send the message) are recorded by the store in the delivery's own batch, so they cost
no extra fsync; `deliver()` hands them over as soon as that batch is durable. Each is POSTed to
the notification proxy (relay.outbound.push_client):

- 200: done. 410: the proxy cannot use the token: it is removed from that account, done.
- Anything else, a timeout or no connection: again after 8, 64, 512, 4096 s; dropped after
  the fifth try or once the next one would pass 5 hours from the item's creation.

Four first attempts and two retries run at once, so a proxy that hangs holds six requests of
60 s each, never a delivery. Pending items survive restarts (the store keeps them until they
are done; a restart tries each again from the first delay, the 5-hour deadline holds). Done
items are forgotten in one store write per second at most. Logs carry no token and no address.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from relay.core.tokens import DEVICETOKEN, live_entries, remove_token
from relay.outbound.push_client import PushClient
from relay.store import PushItem

if TYPE_CHECKING:
    from relay.app import App

BASE_DELAY = 8
MAX_TRIES = 5
DEADLINE = 5 * 3600
FIRST_ATTEMPTS = 4
RETRIES = 2
MAX_PENDING = 10_000  # in memory; beyond it the oldest notifications are given up
FORGET_EVERY = 1.0  # seconds: done items are removed from the store in one write


def live_tokens(now: float) -> Callable[[str | None], list[str]]:
    """What the store calls, in its database thread, on a recipient's stored token value."""
    return lambda raw: [token for _, token in live_entries(raw, now)]


def push_tokens(app: App) -> tuple[str, Callable[[str | None], list[str]]] | None:
    """The Delivery.push_tokens of a delivery now, or None while push is off."""
    return (DEVICETOKEN, live_tokens(time.time())) if app.config.push.url else None


@dataclass(order=True)
class _Pending:
    due: float
    created: int
    item: PushItem = field(compare=False)
    tries: int = field(default=0, compare=False)


class Notifier:
    def __init__(self, app: App, *, clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.clock = clock
        push = app.config.push
        self.client = PushClient(push.url, push.ca_file)
        self.sent = 0  # done with 200 or 410
        self.dropped = 0  # given up (deadline, tries, or the queue cap)
        self._heap: list[_Pending] = []
        self._wake = trio.Event()
        self._forget: list[str] = []
        self._first = trio.CapacityLimiter(FIRST_ATTEMPTS)
        self._retry = trio.CapacityLimiter(RETRIES)

    @property
    def in_flight(self) -> int:
        """Requests sent and not answered (or timed out) yet."""
        return self._first.borrowed_tokens + self._retry.borrowed_tokens

    @property
    def pending(self) -> int:
        return len(self._heap) + self.in_flight

    def add(self, items: Iterable[PushItem]) -> None:
        now = self.clock()
        for item in items:
            heapq.heappush(self._heap, _Pending(now, item.created, item))
        while len(self._heap) > MAX_PENDING:  # the oldest go first
            oldest = min(self._heap, key=lambda p: p.created)
            self._heap.remove(oldest)
            heapq.heapify(self._heap)
            self._give_up(oldest, "queue full")
        self.kick()

    def kick(self) -> None:
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # From before a restart: each is tried again from its first attempt.
        self.add(await self.app.store.push_pending(DEVICETOKEN, live_tokens(time.time())))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forget_done)
                task_status.started()
                while True:
                    now = self.clock()
                    while self._heap and self._heap[0].due <= now:
                        nursery.start_soon(self._attempt, heapq.heappop(self._heap))
                    wait = self._heap[0].due - now if self._heap else float("inf")
                    with trio.move_on_after(wait):
                        await self._wake.wait()
                    self._wake = trio.Event()
        finally:
            with trio.CancelScope(shield=True):
                await self.client.aclose()

    async def _attempt(self, pending: _Pending) -> None:
        item = pending.item
        async with self._first if pending.tries == 0 else self._retry:
            status = await self.client.post(item.token)
        if status == 410:
            try:
                await remove_token(self.app.store, item.addr, item.token)
            except Exception as e:  # the next 410 removes it; the notifier goes on
                self.app.log.exception("push-token-removal-failed", e)
        if status in (200, 410):
            self.sent += 1
            self._forget.append(item.id)
            return
        pending.tries += 1
        delay = BASE_DELAY**pending.tries
        pending.due = self.clock() + delay
        if pending.tries >= MAX_TRIES or pending.due > item.created + DEADLINE:
            self._give_up(pending, f"answer {status}" if status else "no answer")
            return
        heapq.heappush(self._heap, pending)
        self.kick()

    def _give_up(self, pending: _Pending, why: str) -> None:
        self.dropped += 1
        self._forget.append(pending.item.id)
        self.app.log.warning("push-dropped", tries=pending.tries, last=why)

    async def _forget_done(self) -> None:
        while True:
            await trio.sleep(FORGET_EVERY)
            if self._forget:
                ids, self._forget = self._forget, []
                try:
                    await self.app.store.push_done(ids)
                except Exception as e:  # sent again after a restart: better than never
                    self.app.log.exception("push-forget-failed", e)


async def run_push(
    app: App, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """The notifier as a service of the registry; meanwhile `app.on_push` hands it new items."""
    notifier = Notifier(app)
    app.push = notifier
    try:
        await notifier.run(task_status=task_status)
    finally:
        app.push = None
