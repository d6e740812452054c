"""The outbound queue worker: every queued message to every remote recipient, or a bounce.

The queue in the store is the only state. An entry loses a recipient only after a peer accepted
the message for it (or refused it for good and the bounce is stored), so a crash at any moment
leaves every message delivered or still queued; at worst a peer gets it twice.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import trio

from relay.outbound import dkim
from relay.outbound.bounce import send_bounce
from relay.outbound.transport import deliver_all
from relay.store import NoSuchQueueEntry, QueueEntry, StoreError

RESCAN_SECONDS = 10.0  # also picks up `relay queue retry` made while we sleep
MAX_PARALLEL = 100  # messages in flight at once (each fans out to its domains)
SCAN_PAUSE_FACTOR = 3.0  # queue scans take at most about a quarter of the time
SCAN_PAUSE_MAX = 1.0
# Nodes sharing a store lease an entry before sending it (store.queue_claim); the lease ends
# with the attempt's queue_update, or after this long if the node died meanwhile.
CLAIM_SECONDS = 900.0


def backoff(config: Any, attempts: int) -> float:
    fed = config.federation
    return float(min(fed.retry_max, fed.retry_initial * 2 ** max(attempts - 1, 0)))


def tried_for(config: Any, attempts: int) -> float:
    """Seconds the retry schedule takes to make `attempts` attempts (the first at arrival)."""
    return float(sum(backoff(config, n) for n in range(1, attempts)))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Outbound:
    def __init__(self, app: Any, *, clock: Any = time.time):
        self.app = app
        self.clock = clock
        self._wake = trio.Event()
        self._busy: set[str] = set()
        self._elsewhere: dict[str, float] = {}  # id -> trio time: another node is sending it
        self._limiter = trio.CapacityLimiter(MAX_PARALLEL)

    def kick(self) -> None:
        """Look at the queue now (a message was just queued)."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.to_thread.run_sync(dkim.ensure_key, self.app.config)
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                self._wake = trio.Event()
                started = trio.current_time()
                wait = await self._start_due(nursery)
                # Each scan reads the whole queue; with a large backlog (a big peer down) a
                # kick per incoming message would spend all our time scanning. Kicks that
                # arrive meanwhile are served by one scan after a pause that grows with its cost.
                await trio.sleep(
                    min(SCAN_PAUSE_MAX, SCAN_PAUSE_FACTOR * (trio.current_time() - started))
                )
                with trio.move_on_after(wait):
                    await self._wake.wait()

    async def _start_due(self, nursery: trio.Nursery) -> float:
        """Start every due entry; returns the seconds until the next one is due."""
        now = self.clock()
        wait = RESCAN_SECONDS
        latest = now + backoff(self.app.config, 1 << 20)  # no retry is planned further ahead
        moment = trio.current_time()
        self._elsewhere = {k: t for k, t in self._elsewhere.items() if t > moment}
        for entry in await self.app.store.queue_list():
            if entry.id in self._busy or entry.id in self._elsewhere:
                continue
            due = _aware(entry.next_attempt).timestamp()
            if due <= now or due > latest:  # beyond any backoff: the clock was set back
                self._busy.add(entry.id)
                nursery.start_soon(self._attempt, entry)
            else:
                wait = min(wait, due - now)
        return max(wait, 0.01)

    async def _attempt(self, entry: QueueEntry) -> None:
        try:
            async with self._limiter:
                if not await self.app.store.queue_claim(entry.id, CLAIM_SECONDS):
                    # Look again at the next scan: the other node's attempt ends with an update.
                    self._elsewhere[entry.id] = trio.current_time() + RESCAN_SECONDS
                    return
                await self.attempt(entry)
        except StoreError as e:
            self.app.log.exception("queue-attempt-failed", e, id=entry.id)
        finally:
            self._busy.discard(entry.id)
            self.kick()  # the entry's next attempt may be due before the next scan

    async def attempt(self, entry: QueueEntry) -> None:
        """One delivery attempt of one queue entry, with its bookkeeping."""
        app, config = self.app, self.app.config
        try:
            message = await app.store.queue_read(entry.id)
        except NoSuchQueueEntry:
            return  # deleted meanwhile (`relay queue delete`)
        try:
            signed = await dkim.sign(config, message)
            results = await deliver_all(app, entry.sender, entry.recipients, signed)
        except Exception as e:  # a bug must cost a retry, never the message
            app.log.exception("queue-attempt-crashed", e, id=entry.id)
            results = {}
        results = {r: results.get(r, "451 4.3.0 Local error") for r in entry.recipients}
        delivered = [r for r in entry.recipients if results[r].startswith("2")]
        failed = {r: results[r] for r in entry.recipients if results[r].startswith("5")}
        waiting = [r for r in entry.recipients if r not in failed and r not in delivered]
        age = self.clock() - _aware(entry.created).timestamp()
        lifetime = config.federation.queue_lifetime
        # Given up after the lifetime, but only once the retries span half of it: a clock that
        # jumps ahead must not bounce a message at its next attempt.
        if waiting and age >= lifetime and tried_for(config, entry.attempts + 1) >= lifetime / 2:
            failed.update((r, f"{results[r]} (gave up after {age / 3600:.0f} h)") for r in waiting)
            waiting = []
        if failed:
            await self._bounce(entry, failed, message)
        if not waiting:
            await app.store.queue_remove(entry.id)
        elif delivered or failed:
            await app.store.queue_remove(entry.id, [*delivered, *failed])
        if waiting:
            attempts = entry.attempts + 1
            when = datetime.fromtimestamp(self.clock() + backoff(config, attempts), UTC)
            error = results[waiting[0]]
            await app.store.queue_update(
                entry.id, attempts=attempts, next_attempt=when, last_error=error
            )
        app.log.info(
            "queue-attempt",
            id=entry.id,
            # Postfix's words, which operators and the conformance suite look for.
            status="deferred" if waiting else "bounced" if failed else "sent",
            delivered=len(delivered),
            failed=len(failed),
            waiting=len(waiting),
            error=(results[waiting[0]] if waiting else ""),
        )

    async def _bounce(self, entry: QueueEntry, failed: dict[str, str], message: bytes) -> None:
        arrived = _aware(entry.created)
        if await send_bounce(self.app, entry.sender, failed, message, arrived):
            self.kick()
