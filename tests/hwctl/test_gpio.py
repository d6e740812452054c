"""GPIO backends off the Pi: the right library per model, and button/LED wiring through fakes."""

from __future__ import annotations

import os
import sys
import types

import pytest
import trio

from hwctl import button, gpio, leds


class FakeGpioPins:
    """Records pin writes; one input pin whose level the test sets."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, int, int]] = []
        self.outputs: set[int] = set()

    def setup_output(self, pin: int, level: int = 0) -> None:
        self.outputs.add(pin)

    def write(self, pin: int, level: int) -> None:
        self.writes.append((trio.current_time(), pin, level))


def fake_rpi_gpio() -> types.ModuleType:
    module = types.ModuleType("RPi.GPIO")
    module.BCM, module.OUT, module.IN, module.PUD_UP, module.PUD_OFF, module.BOTH = range(6)
    module.level = 1
    module.callbacks = {}
    module.setwarnings = lambda flag: None
    module.setmode = lambda mode: None
    module.setup = lambda pin, direction, **kw: None
    module.input = lambda pin: module.level
    module.add_event_detect = lambda pin, edge, callback: module.callbacks.__setitem__(
        pin, callback
    )
    module.cleanup = lambda: None
    return module


def test_model_picks_the_library(monkeypatch) -> None:
    fake = fake_rpi_gpio()
    monkeypatch.setitem(sys.modules, "RPi", types.ModuleType("RPi"))
    monkeypatch.setitem(sys.modules, "RPi.GPIO", fake)
    sys.modules["RPi"].GPIO = fake
    assert isinstance(gpio.open_gpio("Raspberry Pi 4 Model B Rev 1.4"), gpio.RpiGpio)
    assert isinstance(gpio.open_gpio("Raspberry Pi Zero 2 W Rev 1.0"), gpio.RpiGpio)
    assert gpio.is_pi5("Raspberry Pi 5 Model B Rev 1.0")
    monkeypatch.setitem(sys.modules, "gpiod", None)  # not installed: the Pi 5 path needs it
    with pytest.raises(ImportError):
        gpio.open_gpio("Raspberry Pi 5 Model B Rev 1.0")
    with pytest.raises(RuntimeError, match="simulator"):
        gpio.open_gpio("")


async def test_rpi_gpio_button_edges_reach_the_press_logic(monkeypatch) -> None:
    fake = fake_rpi_gpio()
    monkeypatch.setitem(sys.modules, "RPi", types.ModuleType("RPi"))
    monkeypatch.setitem(sys.modules, "RPi.GPIO", fake)
    sys.modules["RPi"].GPIO = fake
    pins = gpio.RpiGpio()
    levels_send, levels = trio.open_memory_channel(8)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(button.gpio_button, pins, button.BUTTON_PIN, levels_send)
        with trio.fail_after(5):
            while button.BUTTON_PIN not in fake.callbacks:
                await trio.sleep(0.01)
            # RPi.GPIO calls back from its own thread; pressed pulls the pin low.
            fake.level = 0
            await trio.to_thread.run_sync(fake.callbacks[button.BUTTON_PIN], button.BUTTON_PIN)
            assert await levels.receive() is True
            fake.level = 1
            await trio.to_thread.run_sync(fake.callbacks[button.BUTTON_PIN], button.BUTTON_PIN)
            assert await levels.receive() is False
        nursery.cancel_scope.cancel()


async def test_gpio_led_blinks_with_the_pattern_timing(autojump_clock) -> None:
    pins = FakeGpioPins()
    led = leds.GpioLed(pins, 23)
    group = leds.Leds([led])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(group.run)
        await group.show("error")  # 100 ms on, 100 ms off
        await trio.sleep(1.0)
        await group.show("healthy")
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    blinking = [w for w in pins.writes if w[0] < 1.0]
    assert 5 <= sum(1 for _, _, level in blinking if level == 1) <= 6  # a 200 ms period
    assert pins.writes[-1][1:] == (23, 1)  # healthy: steady on
    assert all(t < 1.01 for t, _, _ in pins.writes[:-1])  # and no more toggling after that


def fake_gpiod(chips: dict[str, str]) -> types.ModuleType:
    """libgpiod v2's Python API as far as hwctl uses it, checking each call as the kernel
    would: a line is held by one request at a time (EBUSY otherwise), and only for what it was
    requested as (values of outputs, reads and edges of inputs)."""
    import enum
    import errno

    line = types.ModuleType("gpiod.line")
    line.Direction = enum.Enum("Direction", "AS_IS INPUT OUTPUT")
    line.Value = enum.Enum("Value", "INACTIVE ACTIVE")
    line.Bias = enum.Enum("Bias", "AS_IS UNKNOWN DISABLED PULL_UP PULL_DOWN")
    line.Edge = enum.Enum("Edge", "NONE RISING FALLING BOTH")
    module = types.ModuleType("gpiod")
    module.line = line
    module.held = {}  # (chip, pin) -> request
    module.requests = []

    class LineSettings:
        def __init__(self, direction=line.Direction.AS_IS, output_value=line.Value.INACTIVE,
                     bias=line.Bias.AS_IS, edge_detection=line.Edge.NONE):  # fmt: skip
            self.direction, self.output_value = direction, output_value
            self.bias, self.edge_detection = bias, edge_detection

    class Chip:
        def __init__(self, path: str) -> None:
            self.path = path

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def get_info(self):
            return types.SimpleNamespace(label=chips[self.path])

    class EdgeEvent:
        Type = enum.Enum("Type", "RISING_EDGE FALLING_EDGE")

    class Request:
        def __init__(self, chip: str, consumer: str, config: dict) -> None:
            self.chip, self.consumer, self.config = chip, consumer, config
            self.values = {pin: s.output_value for pin, s in config.items()}
            self.edges: list = []
            self.released = False
            self.read_fd, self.write_fd = os.pipe()

        @property
        def fd(self) -> int:
            return self.read_fd

        def _settings(self, pin: int):
            assert not self.released, "a released request was used"
            return self.config[pin]

        def set_value(self, pin: int, value) -> None:
            assert self._settings(pin).direction is line.Direction.OUTPUT
            self.values[pin] = value

        def get_value(self, pin: int):
            assert self._settings(pin).direction is line.Direction.INPUT
            return self.values[pin]

        def read_edge_events(self):
            assert next(iter(self.config.values())).edge_detection is not line.Edge.NONE
            os.read(self.read_fd, 64)
            events, self.edges = self.edges, []
            return events

        def release(self) -> None:
            self.released = True
            for pin in self.config:
                del module.held[(self.chip, pin)]
            os.close(self.read_fd)
            os.close(self.write_fd)

    def request_lines(path: str, consumer: str, config: dict) -> Request:
        assert path in chips
        for pin in config:
            if (path, pin) in module.held:
                raise OSError(errno.EBUSY, "Device or resource busy")
        req = Request(path, consumer, config)
        for pin in config:
            module.held[(path, pin)] = req
        module.requests.append(req)
        return req

    module.LineSettings, module.Chip, module.EdgeEvent = LineSettings, Chip, EdgeEvent
    module.request_lines = request_lines
    return module


def test_the_pi5_gpiod_path_requests_lines_on_the_header_chip(monkeypatch, tmp_path) -> None:
    chips = {"/dev/gpiochip0": "gpio-brcmstb@107d508500", "/dev/gpiochip4": "pinctrl-rp1"}
    fake = fake_gpiod(chips)
    monkeypatch.setitem(sys.modules, "gpiod", fake)
    monkeypatch.setitem(sys.modules, "gpiod.line", fake.line)
    real_path = gpio.Path
    monkeypatch.setattr(
        gpio,
        "Path",
        lambda p: (
            types.SimpleNamespace(glob=lambda pattern: [real_path(c) for c in chips])
            if p == "/dev"
            else real_path(p)
        ),
    )
    Value, Direction, Bias, Edge = (fake.line.Value, fake.line.Direction, fake.line.Bias,
                                    fake.line.Edge)  # fmt: skip
    pins = gpio.GpiodGpio()
    assert pins.chip_path == "/dev/gpiochip4"  # the RP1, not the SoC's own GPIO block

    pins.setup_output(17, 1)
    pins.write(17, 0)
    pins.setup_output(17)  # set up again: the old request is given back first (no EBUSY)
    pins.write(17, 1)
    first, second = fake.requests
    assert first.released and first.consumer == "hwctl"
    assert first.config[17].direction is Direction.OUTPUT
    assert first.config[17].output_value is Value.ACTIVE and first.values[17] is Value.INACTIVE
    assert second.values[17] is Value.ACTIVE

    pins.setup_input(27, pull_up=True)
    button = fake.requests[-1]
    settings = button.config[27]
    assert (settings.direction, settings.bias, settings.edge_detection) == (
        Direction.INPUT, Bias.PULL_UP, Edge.BOTH,
    )  # fmt: skip
    button.values[27] = Value.INACTIVE
    assert pins.read(27) == 0
    button.values[27] = Value.ACTIVE
    assert pins.read(27) == 1
    button.edges = [types.SimpleNamespace(event_type=fake.EdgeEvent.Type.FALLING_EDGE),
                    types.SimpleNamespace(event_type=fake.EdgeEvent.Type.RISING_EDGE)]  # fmt: skip
    os.write(button.write_fd, b"x")
    assert pins.edge_fd(27) == button.read_fd
    assert pins.read_edges(27) == [0, 1]

    pins.close()
    assert fake.held == {} and all(r.released for r in fake.requests)
