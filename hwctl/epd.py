"""Driver for SSD1680-class e-paper panels (Waveshare 2.13" V4 and 2.7" V2) over a small bus.

The driver is synchronous and talks to a `PanelBus` (SPI bytes, GPIO levels, delays), so the exact
command sequence can be recorded and checked in tests; hwctl runs it in a worker thread.
Command numbers and their order follow the SSD1680 datasheet (section "Typical operating sequence").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

# Waveshare HAT wiring (BCM numbering), the same on both panels.
PIN_RST = 17
PIN_DC = 25
PIN_BUSY = 24  # high while the controller is busy
PIN_PWR = 18  # panel supply switch on newer HAT revisions; harmless where unconnected

# SSD1680 commands
DRIVER_OUTPUT_CONTROL = 0x01
DEEP_SLEEP = 0x10
DATA_ENTRY_MODE = 0x11
SW_RESET = 0x12
TEMPERATURE_SENSOR = 0x18
MASTER_ACTIVATION = 0x20
DISPLAY_UPDATE_CONTROL_1 = 0x21
DISPLAY_UPDATE_CONTROL_2 = 0x22
WRITE_RAM_BW = 0x24
WRITE_RAM_RED = 0x26  # in B/W partial mode: the "previous image" the waveform compares against
BORDER_WAVEFORM = 0x3C
RAM_X_RANGE = 0x44
RAM_Y_RANGE = 0x45
RAM_X_COUNTER = 0x4E
RAM_Y_COUNTER = 0x4F

# Display Update Control 2 sequences: load temperature + LUT, display, power off.
UPDATE_FULL = 0xF7
UPDATE_PARTIAL = 0xFF  # display mode 2 (partial waveform)

BUSY_TIMEOUT = 10.0  # a full refresh takes ~2 s; much longer means the panel is not answering


class PanelBus(Protocol):
    def spi_write(self, data: bytes) -> None: ...
    def gpio_write(self, pin: int, level: int) -> None: ...
    def gpio_read(self, pin: int) -> int: ...
    def delay_ms(self, ms: int) -> None: ...
    def close(self) -> None: ...


class PanelTimeout(Exception):
    """BUSY stayed high: the panel is missing, unpowered or miswired."""


@dataclass(frozen=True)
class PanelSpec:
    name: str
    width: int  # native (portrait) source lines: the RAM X direction, in pixels
    height: int  # native gates: the RAM Y direction

    @property
    def landscape(self) -> tuple[int, int]:
        """The size screens are drawn at (the HAT sits landscape on the Pi)."""
        return (self.height, self.width)

    @property
    def row_bytes(self) -> int:
        return (self.width + 7) // 8


PANELS = {
    "2in13_v4": PanelSpec("Waveshare 2.13in e-Paper HAT V4", width=122, height=250),
    "2in7_v2": PanelSpec("Waveshare 2.7in e-Paper HAT V2", width=176, height=264),
}


def frame_buffer(spec: PanelSpec, image: Image.Image) -> bytes:
    """Pack a landscape 1-bit image into panel RAM order (portrait rows, MSB first, 1 = white)."""
    if image.size != spec.landscape:
        raise ValueError(f"frame is {image.size}, panel wants {spec.landscape}")
    # Rotating by 90 degrees maps the landscape drawing onto the portrait RAM layout.
    portrait = image.convert("1").rotate(90, expand=True)
    if portrait.width % 8:  # tobytes() pads rows with black bits; keep the unseen columns white
        padded = Image.new("1", (spec.row_bytes * 8, spec.height), 1)
        padded.paste(portrait, (0, 0))
        portrait = padded
    return portrait.tobytes()


class SSD1680:
    def __init__(self, bus: PanelBus, spec: PanelSpec) -> None:
        self.bus = bus
        self.spec = spec
        self.partial_base_written = False

    # -- low level -------------------------------------------------------------------------------

    def command(self, cmd: int, data: bytes = b"") -> None:
        self.bus.gpio_write(PIN_DC, 0)
        self.bus.spi_write(bytes([cmd]))
        if data:
            self.bus.gpio_write(PIN_DC, 1)
            self.bus.spi_write(data)

    def wait_idle(self) -> None:
        deadline = time.monotonic() + BUSY_TIMEOUT
        while self.bus.gpio_read(PIN_BUSY):
            if time.monotonic() > deadline:
                raise PanelTimeout(f"{self.spec.name}: BUSY still high after {BUSY_TIMEOUT} s")
            self.bus.delay_ms(10)

    def hardware_reset(self, low_ms: int = 2) -> None:
        self.bus.gpio_write(PIN_PWR, 1)
        self.bus.gpio_write(PIN_RST, 1)
        self.bus.delay_ms(20)
        self.bus.gpio_write(PIN_RST, 0)
        self.bus.delay_ms(low_ms)
        self.bus.gpio_write(PIN_RST, 1)
        self.bus.delay_ms(20)

    def _window(self) -> None:
        last_x = self.spec.row_bytes - 1
        last_y = self.spec.height - 1
        self.command(RAM_X_RANGE, bytes([0x00, last_x]))
        self.command(RAM_Y_RANGE, bytes([0x00, 0x00, last_y & 0xFF, last_y >> 8]))

    def _cursor_home(self) -> None:
        self.command(RAM_X_COUNTER, b"\x00")
        self.command(RAM_Y_COUNTER, b"\x00\x00")

    # -- operations ------------------------------------------------------------------------------

    def init_full(self) -> None:
        """Wake the controller and set it up for a full-waveform refresh."""
        self.hardware_reset()
        self.wait_idle()
        self.command(SW_RESET)
        self.wait_idle()
        last_y = self.spec.height - 1
        self.command(DRIVER_OUTPUT_CONTROL, bytes([last_y & 0xFF, last_y >> 8, 0x00]))
        self.command(DATA_ENTRY_MODE, b"\x03")  # X then Y increment
        self._window()
        self.command(BORDER_WAVEFORM, b"\x05")
        self.command(DISPLAY_UPDATE_CONTROL_1, b"\x00\x80")
        self.command(TEMPERATURE_SENSOR, b"\x80")  # internal sensor
        self._cursor_home()
        self.wait_idle()
        self.partial_base_written = False

    def display_full(self, buffer: bytes) -> None:
        """Full refresh (flashes, ~2 s). Also stores the frame as the base for partial updates."""
        self._check(buffer)
        self._cursor_home()
        self.command(WRITE_RAM_BW, buffer)
        self._cursor_home()
        self.command(WRITE_RAM_RED, buffer)
        self.command(DISPLAY_UPDATE_CONTROL_2, bytes([UPDATE_FULL]))
        self.command(MASTER_ACTIVATION)
        self.wait_idle()
        self.partial_base_written = True

    def display_partial(self, buffer: bytes) -> None:
        """Partial refresh (no flash, ~0.3 s) against the previous frame kept in RAM."""
        self._check(buffer)
        self.hardware_reset(low_ms=1)
        self.command(BORDER_WAVEFORM, b"\x80")
        # A reset restores the controller's default gate count; set the panel's again.
        last_y = self.spec.height - 1
        self.command(DRIVER_OUTPUT_CONTROL, bytes([last_y & 0xFF, last_y >> 8, 0x00]))
        self.command(DATA_ENTRY_MODE, b"\x03")
        self._window()
        self._cursor_home()
        self.command(WRITE_RAM_BW, buffer)
        self.command(DISPLAY_UPDATE_CONTROL_2, bytes([UPDATE_PARTIAL]))
        self.command(MASTER_ACTIVATION)
        self.wait_idle()

    def sleep(self) -> None:
        """Deep sleep: the panel keeps its image without power; a reset is needed to wake it."""
        self.command(DEEP_SLEEP, b"\x01")
        self.bus.delay_ms(100)
        self.bus.gpio_write(PIN_PWR, 0)

    def _check(self, buffer: bytes) -> None:
        expected = self.spec.row_bytes * self.spec.height
        if len(buffer) != expected:
            raise ValueError(f"buffer is {len(buffer)} bytes, {self.spec.name} needs {expected}")
