"""The factory-reset button: debouncing and press classification, plus GPIO and simulator inputs.

`PressLogic` is a pure state machine fed with (time, level) samples and clock ticks; it returns
what happened. A press shorter than COUNTDOWN_AFTER is a short press (refresh + info page);
holding on shows a countdown; at HOLD_SECONDS the reset fires; releasing before that cancels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import trio

DEBOUNCE = 0.05
COUNTDOWN_AFTER = 2.0  # show the countdown only once a hold is clearly deliberate
HOLD_SECONDS = 10.0
BUTTON_PIN = 27  # BCM; wired to ground, internal pull-up (pressed = low)


@dataclass(frozen=True)
class ShortPress:
    pass


@dataclass(frozen=True)
class Countdown:
    remaining: int  # whole seconds left before the reset fires


@dataclass(frozen=True)
class Cancelled:
    pass


@dataclass(frozen=True)
class LongPress:
    pass


Event = ShortPress | Countdown | Cancelled | LongPress


class PressLogic:
    def __init__(self, hold: float = HOLD_SECONDS, debounce: float = DEBOUNCE) -> None:
        self.hold = hold
        self.debounce = debounce
        self.raw = False
        self.raw_since = 0.0
        self.pressed = False
        self.pressed_at = 0.0
        self.shown: int | None = None  # last countdown value reported
        self.fired = False

    def feed(self, t: float, pressed: bool) -> list[Event]:
        """A raw level sample or edge; bounces shorter than the debounce time are ignored."""
        events = self.tick(t)
        if pressed != self.raw:
            self.raw = pressed
            self.raw_since = t
        return events

    def tick(self, t: float) -> list[Event]:
        events: list[Event] = []
        if self.raw != self.pressed and t - self.raw_since >= self.debounce:
            events += self._accept(self.raw, self.raw_since)
        if self.pressed and not self.fired:
            held = t - self.pressed_at
            if held >= self.hold:
                self.fired = True
                events.append(LongPress())
            elif held >= COUNTDOWN_AFTER:
                remaining = math.ceil(self.hold - held)
                if remaining != self.shown:
                    self.shown = remaining
                    events.append(Countdown(remaining))
        return events

    def _accept(self, pressed: bool, t: float) -> list[Event]:
        self.pressed = pressed
        if pressed:
            self.pressed_at = t
            self.shown = None
            self.fired = False
            return []
        if self.fired:
            return []
        if self.shown is not None:
            return [Cancelled()]
        return [ShortPress()]

    def next_deadline(self) -> float | None:
        """The next time tick() may have something to say (None: only a new edge will)."""
        if self.raw != self.pressed:
            return self.raw_since + self.debounce
        if not self.pressed or self.fired:
            return None
        held_next = COUNTDOWN_AFTER if self.shown is None else self.hold - self.shown + 1.0
        # A millisecond late, so float rounding never lands just short of the boundary.
        return self.pressed_at + min(held_next, self.hold) + 1e-3


async def run_logic(
    levels: trio.MemoryReceiveChannel, events: trio.MemorySendChannel, logic: PressLogic
) -> None:
    """Turn (pressed: bool) level changes into button events, ticking at the logic's deadlines."""
    while True:
        deadline = logic.next_deadline()
        timeout = math.inf if deadline is None else max(0.0, deadline - trio.current_time())
        with trio.move_on_after(timeout):
            pressed = await levels.receive()
            for ev in logic.feed(trio.current_time(), pressed):
                await events.send(ev)
            continue
        for ev in logic.tick(trio.current_time()):
            await events.send(ev)


async def sim_button(
    socket_path: Path, levels: trio.MemorySendChannel, *, task_status=None
) -> None:
    """Simulator input: `python -m hwctl press` connects and sends lines "down" / "up"."""
    socket_path.unlink(missing_ok=True)
    listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await listener.bind(str(socket_path))
    listener.listen(4)
    if task_status is not None:
        task_status.started()

    async def client(sock: trio.socket.SocketType) -> None:
        stream = trio.SocketStream(sock)
        buffer = b""
        async with stream:
            while data := await stream.receive_some(256):
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip() in (b"down", b"up"):
                        await levels.send(line.strip() == b"down")
            # A vanished simulator client must not leave the button held down.
            await levels.send(False)

    with listener:
        async with trio.open_nursery() as nursery:
            while True:
                sock, _ = await listener.accept()
                nursery.start_soon(client, sock)


async def gpio_button(gpio, pin: int, levels: trio.MemorySendChannel) -> None:
    """Real button on a GPIO (pressed = low). gpiod: await the edge fd; RPi.GPIO: its callback."""
    gpio.setup_input(pin, pull_up=True)
    if hasattr(gpio, "edge_fd"):
        while True:
            await trio.lowlevel.wait_readable(gpio.edge_fd(pin))
            for level in gpio.read_edges(pin):
                await levels.send(level == 0)
    token = trio.lowlevel.current_trio_token()

    def on_edge(level: int) -> None:
        trio.from_thread.run_sync(levels.send_nowait, level == 0, trio_token=token)

    gpio.add_edge_callback(pin, on_edge)
    await trio.sleep_forever()
