"""Button classification, refresh policy and LED backends, fed with synthetic time."""

from __future__ import annotations

from pathlib import Path

import trio

from hwctl import button, display, leds
from hwctl.button import Cancelled, Countdown, LongPress, PressLogic, ShortPress


def run_script(logic: PressLogic, script: list[tuple[float, bool]], until: float) -> list:
    """Feed edges at their times and tick every 10 ms, like the trio task does at deadlines."""
    events = []
    edges = list(script)
    t = 0.0
    while t <= until:
        while edges and edges[0][0] <= t:
            events += logic.feed(*edges.pop(0))
        events += logic.tick(t)
        t = round(t + 0.01, 2)
    return events


def test_short_press_is_reported_once_on_release() -> None:
    events = run_script(PressLogic(), [(1.0, True), (1.3, False)], until=3)
    assert events == [ShortPress()]


def test_bounces_shorter_than_the_debounce_time_are_ignored() -> None:
    script = [(1.0, True), (1.01, False), (1.02, True), (1.03, False)]  # contact chatter only
    assert run_script(PressLogic(), script, until=3) == []
    chattery_press = [
        (1.0, True),
        (1.01, False),
        (1.02, True),
        (1.5, False),
        (1.51, True),
        (1.52, False),
    ]
    assert run_script(PressLogic(), chattery_press, until=3) == [ShortPress()]


def test_ten_second_hold_counts_down_and_fires_once() -> None:
    events = run_script(PressLogic(), [(1.0, True), (13.0, False)], until=15)
    assert events == [Countdown(n) for n in range(8, 0, -1)] + [LongPress()]


def test_early_release_during_the_countdown_cancels() -> None:
    events = run_script(PressLogic(), [(1.0, True), (7.5, False)], until=12)
    assert events == [Countdown(n) for n in (8, 7, 6, 5, 4)] + [Cancelled()]
    assert LongPress() not in events


async def test_the_trio_task_ticks_at_deadlines(autojump_clock) -> None:
    levels_send, levels = trio.open_memory_channel(8)
    events_send, events = trio.open_memory_channel(32)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(button.run_logic, levels, events_send, PressLogic())
        await levels_send.send(True)
        await trio.sleep(10.5)
        await levels_send.send(False)
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    got = []
    while True:
        try:
            got.append(events.receive_nowait())
        except trio.WouldBlock:
            break
    assert got == [Countdown(n) for n in range(8, 0, -1)] + [LongPress()]


def test_refresh_policy_limits_full_refreshes() -> None:
    policy = display.RefreshPolicy()
    assert policy.decide(0) == "full"  # first frame: nothing to compare a partial against
    policy.record("full", 0)
    for i in range(1, 6):
        assert policy.decide(10 * i) == "partial"
        policy.record("partial", 10 * i)
    # Five partials done, but a full refresh is not allowed again before 180 s ...
    assert policy.decide(100) == "partial"
    assert policy.next_maintenance() == 180
    # ... except on a button press.
    assert policy.decide(100, forced=True) == "full"
    assert policy.decide(181) == "full"
    policy.record("full", 181)
    assert policy.next_maintenance() == 181 + display.DAILY


def test_sysfs_led_uses_the_kernel_timer_trigger(tmp_path: Path) -> None:
    led_dir = tmp_path / "ACT"
    led_dir.mkdir()
    for name, value in {"trigger": "mmc0", "brightness": "0", "max_brightness": "255"}.items():
        (led_dir / name).write_text(value)
    led = leds.SysfsLed(led_dir)

    async def scenario() -> None:
        await led.apply(leds.PATTERNS["error"])
        assert (led_dir / "trigger").read_text() == "timer"
        assert (led_dir / "delay_on").read_text() == "100"
        assert (led_dir / "delay_off").read_text() == "100"
        await led.apply(leds.PATTERNS["healthy"])
        assert (led_dir / "trigger").read_text() == "none"
        assert (led_dir / "brightness").read_text() == "255"

    trio.run(scenario)


async def test_sim_led_records_the_timeline(tmp_path: Path) -> None:
    clock = iter(range(100)).__next__
    sim = leds.SimLed(tmp_path / "leds.jsonl", clock=clock)
    group = leds.Leds([sim])
    for name in ("booting", "booting", "healthy", "reset_countdown", "healthy"):
        await group.show(name)
    assert [name for _, name in sim.timeline] == [
        "booting",
        "healthy",
        "reset_countdown",
        "healthy",
    ]
    assert leds.pattern_at(sim.timeline, 2.5) == "reset_countdown"
    assert len((tmp_path / "leds.jsonl").read_text().splitlines()) == 4
