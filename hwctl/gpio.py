"""GPIO access for Raspberry Pi 1-5: RPi.GPIO on Pi 1-4, libgpiod v2 on Pi 5 (imported lazily).

RPi.GPIO cannot drive the Pi 5's RP1 I/O chip, and gpiod needs the right chip, so the Pi model
decides. Neither library is needed off the Pi: the simulators never import this module's backends.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

MODEL_FILE = Path("/proc/device-tree/model")


class Gpio(Protocol):
    def setup_output(self, pin: int, level: int = 0) -> None: ...
    def setup_input(self, pin: int, pull_up: bool = False) -> None: ...
    def write(self, pin: int, level: int) -> None: ...
    def read(self, pin: int) -> int: ...
    def close(self) -> None: ...


def pi_model(model_file: Path = MODEL_FILE) -> str:
    try:
        return model_file.read_bytes().rstrip(b"\0").decode(errors="replace")
    except OSError:
        return ""


def is_pi5(model: str) -> bool:
    return model.startswith("Raspberry Pi 5") or model.startswith("Raspberry Pi Compute Module 5")


def open_gpio(model: str | None = None) -> Gpio:
    model = pi_model() if model is None else model
    if not model.startswith("Raspberry Pi"):
        raise RuntimeError("no Raspberry Pi GPIO here (use the simulator backends)")
    return GpiodGpio() if is_pi5(model) else RpiGpio()


class RpiGpio:
    def __init__(self) -> None:
        import RPi.GPIO as GPIO  # noqa: N814 (the library's own spelling)

        self.GPIO = GPIO
        GPIO.setwarnings(False)
        GPIO.setmode(GPIO.BCM)

    def setup_output(self, pin: int, level: int = 0) -> None:
        self.GPIO.setup(pin, self.GPIO.OUT, initial=level)

    def setup_input(self, pin: int, pull_up: bool = False) -> None:
        pud = self.GPIO.PUD_UP if pull_up else self.GPIO.PUD_OFF
        self.GPIO.setup(pin, self.GPIO.IN, pull_up_down=pud)

    def write(self, pin: int, level: int) -> None:
        self.GPIO.output(pin, level)

    def read(self, pin: int) -> int:
        return int(self.GPIO.input(pin))

    def add_edge_callback(self, pin: int, callback: Callable[[int], None]) -> None:
        """`callback(level)` runs in RPi.GPIO's own thread on every edge."""
        self.GPIO.add_event_detect(
            pin, self.GPIO.BOTH, callback=lambda ch: callback(int(self.GPIO.input(ch)))
        )

    def close(self) -> None:
        self.GPIO.cleanup()


class GpiodGpio:
    """libgpiod v2 on the chip that carries the 40-pin header (RP1 on a Pi 5)."""

    HEADER_CHIP_LABELS = ("pinctrl-rp1", "pinctrl-bcm2711", "pinctrl-bcm2835")

    def __init__(self) -> None:
        import gpiod

        self.gpiod = gpiod
        self.chip_path = self._header_chip()
        self.requests: dict[int, Any] = {}

    def _header_chip(self) -> str:
        for path in sorted(Path("/dev").glob("gpiochip*")):
            with self.gpiod.Chip(str(path)) as chip:
                if chip.get_info().label in self.HEADER_CHIP_LABELS:
                    return str(path)
        raise RuntimeError("no GPIO chip for the 40-pin header found")

    def _request(self, pin: int, settings: Any) -> Any:
        if pin in self.requests:
            self.requests.pop(pin).release()
        req = self.gpiod.request_lines(self.chip_path, consumer="hwctl", config={pin: settings})
        self.requests[pin] = req
        return req

    def setup_output(self, pin: int, level: int = 0) -> None:
        from gpiod.line import Direction, Value

        value = Value.ACTIVE if level else Value.INACTIVE
        self._request(pin, self.gpiod.LineSettings(direction=Direction.OUTPUT, output_value=value))

    def setup_input(self, pin: int, pull_up: bool = False) -> None:
        from gpiod.line import Bias, Direction, Edge

        bias = Bias.PULL_UP if pull_up else Bias.DISABLED
        settings = self.gpiod.LineSettings(
            direction=Direction.INPUT, bias=bias, edge_detection=Edge.BOTH
        )
        self._request(pin, settings)

    def write(self, pin: int, level: int) -> None:
        from gpiod.line import Value

        self.requests[pin].set_value(pin, Value.ACTIVE if level else Value.INACTIVE)

    def read(self, pin: int) -> int:
        from gpiod.line import Value

        return int(self.requests[pin].get_value(pin) == Value.ACTIVE)

    def edge_fd(self, pin: int) -> int:
        """Readable when edges are pending: a trio task awaits it, then calls read_edges."""
        return self.requests[pin].fd

    def read_edges(self, pin: int) -> list[int]:
        from gpiod import EdgeEvent

        events = self.requests[pin].read_edge_events()
        return [1 if e.event_type is EdgeEvent.Type.RISING_EDGE else 0 for e in events]

    def close(self) -> None:
        for req in self.requests.values():
            req.release()
        self.requests.clear()


class SpiGpioBus:
    """The e-paper bus on real hardware: /dev/spidev0.0 (mode 0, 4 MHz) plus the HAT's GPIO pins."""

    def __init__(self, gpio: Gpio, *, bus: int = 0, device: int = 0) -> None:
        import spidev

        from hwctl import epd

        self.gpio = gpio
        self.spi = spidev.SpiDev()
        self.spi.open(bus, device)
        self.spi.mode = 0
        self.spi.max_speed_hz = 4_000_000
        for pin in (epd.PIN_RST, epd.PIN_DC, epd.PIN_PWR):
            gpio.setup_output(pin)
        gpio.setup_input(epd.PIN_BUSY)

    def spi_write(self, data: bytes) -> None:
        # spidev's xfer has a per-call size limit (4096 bytes by default); a frame is bigger.
        for i in range(0, len(data), 4096):
            self.spi.writebytes2(data[i : i + 4096])

    def gpio_write(self, pin: int, level: int) -> None:
        self.gpio.write(pin, level)

    def gpio_read(self, pin: int) -> int:
        return self.gpio.read(pin)

    def delay_ms(self, ms: int) -> None:
        import time

        time.sleep(ms / 1000)

    def close(self) -> None:
        self.spi.close()
