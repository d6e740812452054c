"""Status LEDs: named patterns, shown on kernel LEDs (/sys/class/leds), GPIO LEDs or a simulator.

A pattern is either steady or a blink (on ms, off ms). Blinks on kernel LEDs use the `timer`
trigger, so the kernel blinks with no wake-ups in this process; GPIO LEDs need a small task.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio


@dataclass(frozen=True)
class Pattern:
    name: str
    on_ms: int  # 0 with off_ms 0: steady off
    off_ms: int  # 0: steady on
    meaning: str


PATTERNS = {
    p.name: p
    for p in (
        Pattern("booting", 500, 500, "starting up, waiting for the relay"),
        Pattern("healthy", 1, 0, "relay running, nothing to report"),
        Pattern("degraded", 150, 1850, "running, but no network, clock not synced or disk > 90%"),
        Pattern("error", 100, 100, "relay unreachable or a hardware fault"),
        Pattern("reset_countdown", 50, 50, "button held: factory reset when the countdown ends"),
        Pattern("busy", 250, 750, "copying data to or from a USB drive"),
        Pattern("updating", 1000, 250, "downloading or installing an update: keep the power on"),
        Pattern("off", 0, 0, "no power to hwctl"),
    )
}


class Led(Protocol):
    async def apply(self, pattern: Pattern) -> None: ...


class SysfsLed:
    """A kernel LED such as the Pi's ACT: /sys/class/leds/<name>/{trigger,brightness,delay_*}."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.max = int(self._read("max_brightness") or 1)

    def _read(self, name: str) -> str:
        try:
            return (self.path / name).read_text().strip()
        except OSError:
            return ""

    def _write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    async def apply(self, pattern: Pattern) -> None:
        if pattern.off_ms == 0 or pattern.on_ms == 0:
            self._write("trigger", "none")
            self._write("brightness", str(self.max if pattern.on_ms else 0))
            return
        # Selecting the timer trigger creates delay_on/delay_off; set them afterwards.
        self._write("trigger", "timer")
        self._write("delay_on", str(pattern.on_ms))
        self._write("delay_off", str(pattern.off_ms))


class GpioLed:
    """An LED on a GPIO pin; blinking is driven by a task in the LED controller's nursery."""

    def __init__(self, gpio, pin: int) -> None:
        self.gpio = gpio
        self.pin = pin
        gpio.setup_output(pin, 0)
        self.pattern = PATTERNS["off"]
        self.wake = trio.Event()

    async def apply(self, pattern: Pattern) -> None:
        self.pattern = pattern
        self.wake.set()

    async def run(self) -> None:
        while True:
            self.wake = trio.Event()
            p = self.pattern
            if p.on_ms == 0 or p.off_ms == 0:
                self.gpio.write(self.pin, 1 if p.on_ms else 0)
                await self.wake.wait()
                continue
            with trio.move_on_after(3600):  # re-evaluate now and then even without a change
                while not self.wake.is_set():
                    self.gpio.write(self.pin, 1)
                    with trio.move_on_after(p.on_ms / 1000):
                        await self.wake.wait()
                    self.gpio.write(self.pin, 0)
                    with trio.move_on_after(p.off_ms / 1000):
                        await self.wake.wait()


class SimLed:
    """Simulator: records the pattern timeline (in memory and as JSON lines in a file)."""

    def __init__(self, log_path: Path | None = None, clock=time.time) -> None:
        self.log_path = log_path
        self.clock = clock
        self.timeline: list[tuple[float, str]] = []

    async def apply(self, pattern: Pattern) -> None:
        entry = (self.clock(), pattern.name)
        self.timeline.append(entry)
        if self.log_path is not None:
            record = {"time": entry[0], "pattern": pattern.name}
            record.update(on_ms=pattern.on_ms, off_ms=pattern.off_ms)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


class Leds:
    """All status LEDs show one pattern; the last pattern set wins, repeats are not rewritten."""

    def __init__(self, leds: list[Led]) -> None:
        self.leds = leds
        self.current: str | None = None

    async def show(self, name: str) -> None:
        if name == self.current:
            return
        self.current = name
        for led in self.leds:
            await led.apply(PATTERNS[name])

    async def run(self) -> None:
        """Drive the LEDs that need a task (GPIO blinking); returns at once if none do."""
        async with trio.open_nursery() as nursery:
            for led in self.leds:
                if isinstance(led, GpioLed):
                    nursery.start_soon(led.run)


def pattern_at(timeline: list[tuple[float, str]], t: float) -> str | None:
    """Which pattern a recorded timeline showed at time t (for tests and the docs)."""
    shown = None
    for when, name in timeline:
        if when > t:
            break
        shown = name
    return shown
