"""The e-ink display: refresh policy (when full, when partial) and the panel or simulator backends.

E-paper wears and ghosts: the vendor recommends at most one full refresh per 180 s, a full refresh
after a few partial ones, one at least daily, and the panel asleep between updates. The policy is
a pure object fed with timestamps so it can be tested without waiting.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import trio
from PIL import Image

from hwctl import epd

Mode = Literal["full", "partial"]

FULL_MIN_INTERVAL = 180.0
MAX_PARTIALS = 5  # partial refreshes before ghosting calls for a full one
DAILY = 24 * 3600.0


@dataclass
class RefreshPolicy:
    last_full: float | None = None
    partials: int = 0

    def decide(self, now: float, *, forced: bool = False) -> Mode:
        if self.last_full is None or forced:
            return "full"
        since = now - self.last_full
        if since >= DAILY or (self.partials >= MAX_PARTIALS and since >= FULL_MIN_INTERVAL):
            return "full"
        return "partial"

    def record(self, mode: Mode, now: float) -> None:
        if mode == "full":
            self.last_full = now
            self.partials = 0
        else:
            self.partials += 1

    def next_maintenance(self) -> float | None:
        """When the current frame should be redrawn in full to clear ghosting (None: no need)."""
        if self.last_full is None:
            return None
        if self.partials >= MAX_PARTIALS:
            return self.last_full + FULL_MIN_INTERVAL
        return self.last_full + DAILY


class Backend(Protocol):
    size: tuple[int, int]

    async def draw(self, image: Image.Image, mode: Mode, screen: str) -> None: ...
    def close(self) -> None: ...


class PngBackend:
    """Simulator: every frame becomes a PNG; `current.png` always holds the latest one."""

    def __init__(self, directory: Path, spec: epd.PanelSpec) -> None:
        self.directory = directory
        self.size = spec.landscape
        directory.mkdir(parents=True, exist_ok=True)
        self.count = len(list(directory.glob("frame-*.png")))

    async def draw(self, image: Image.Image, mode: Mode, screen: str) -> None:
        self.count += 1
        name = f"frame-{self.count:05d}-{mode}-{screen}.png"
        image.save(self.directory / name)
        tmp = self.directory / "current.png.tmp"
        image.save(tmp, format="PNG")
        os.replace(tmp, self.directory / "current.png")
        record = {"frame": name, "mode": mode, "screen": screen, "time": time.time()}
        with open(self.directory / "frames.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    def close(self) -> None:
        pass


class PanelBackend:
    """A real panel: blocking SPI work runs in a thread; the panel sleeps between updates."""

    def __init__(self, driver: epd.SSD1680) -> None:
        self.driver = driver
        self.size = driver.spec.landscape

    async def draw(self, image: Image.Image, mode: Mode, screen: str) -> None:
        buffer = epd.frame_buffer(self.driver.spec, image)
        try:
            await trio.to_thread.run_sync(self._draw_blocking, buffer, mode)
        except (epd.PanelTimeout, OSError) as e:
            # A missing or broken panel must not take the LEDs, button and mDNS down with it.
            print(f"hwctl: display update failed: {e}", file=sys.stderr, flush=True)
            self.driver.partial_base_written = False

    def _draw_blocking(self, buffer: bytes, mode: Mode) -> None:
        if mode == "full" or not self.driver.partial_base_written:
            self.driver.init_full()
            self.driver.display_full(buffer)
        else:
            self.driver.display_partial(buffer)
        self.driver.sleep()

    def close(self) -> None:
        self.driver.bus.close()


class SimulatorBackend:
    """`hwctl run --sim`: each frame goes to the PNG log (with its screen name) and through the
    real panel driver to a simulated panel (hwctl/simpanel.py), which shows what it was sent."""

    def __init__(self, directory: Path, spec: epd.PanelSpec) -> None:
        from hwctl.simpanel import SimulatedPanel

        self.png = PngBackend(directory / "frames", spec)
        self.panel = PanelBackend(epd.SSD1680(SimulatedPanel(directory / "panel", spec), spec))
        self.size = spec.landscape

    async def draw(self, image: Image.Image, mode: Mode, screen: str) -> None:
        await self.panel.draw(image, mode, screen)
        await self.png.draw(image, mode, screen)

    def close(self) -> None:
        self.panel.close()


class Display:
    """Shows frames through a backend with the refresh policy; one update at a time."""

    def __init__(self, backend: Backend, clock=time.monotonic) -> None:
        self.backend = backend
        self.policy = RefreshPolicy()
        self.clock = clock
        self.current: tuple[Image.Image, str] | None = None
        self.lock = trio.Lock()
        self.changed = trio.Event()

    @property
    def size(self) -> tuple[int, int]:
        return self.backend.size

    async def show(self, image: Image.Image, screen: str, *, forced: bool = False) -> Mode | None:
        """Draw a frame; identical frames are skipped (the panel keeps its image unpowered)."""
        async with self.lock:
            if (
                not forced
                and self.current is not None
                and self.current[0].tobytes() == image.tobytes()
            ):
                return None
            now = self.clock()
            mode = self.policy.decide(now, forced=forced)
            await self.backend.draw(image, mode, screen)
            self.policy.record(mode, now)
            self.current = (image, screen)
            self.changed.set()
            self.changed = trio.Event()
            return mode

    async def maintain(self) -> None:
        """Redraw the current frame in full when ghosting or the daily rule call for it."""
        while True:
            due = self.policy.next_maintenance()
            if due is None or self.current is None:
                await self.changed.wait()
                continue
            with trio.move_on_after(max(0.0, due - self.clock())):
                await self.changed.wait()
                continue
            async with self.lock:
                if self.current is not None and self.policy.next_maintenance() == due:
                    image, screen = self.current
                    await self.backend.draw(image, "full", screen)
                    self.policy.record("full", self.clock())
