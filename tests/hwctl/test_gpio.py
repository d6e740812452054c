"""GPIO backends off the Pi: the right library per model, and button/LED wiring through fakes."""

from __future__ import annotations

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
