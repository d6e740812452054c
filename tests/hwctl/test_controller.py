"""hwctl's controller in-process against the relay's admin socket and real store."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import trio

from hwctl import controller as controller_mod
from hwctl import epd, screens
from hwctl.controller import Controller
from hwctl.display import Display, PngBackend
from hwctl.leds import Leds, SimLed
from relay import admin
from relay.config import Shadowsocks
from relay.core.admin import status as admin_status
from relay.core.update.updater import UpdateState
from relay.shadowsocks.link import proxy_url
from tests.helpers import free_ports, require_tool
from tests.hwctl.fakes import running_app


async def wait_until(predicate, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def setup(app, tmp_path: Path):
    return controller_for(app.config.data_dir, tmp_path)


def controller_for(data_dir: Path, tmp_path: Path):
    """A controller of the relay whose data directory is `data_dir`, drawing PNGs in tmp_path."""
    display = Display(PngBackend(tmp_path / "frames", epd.PANELS["2in13_v4"]))
    led = SimLed()
    ctl = Controller(data_dir / "admin.sock", display, Leds([led]))
    return ctl, display, led


def screens_drawn(tmp_path: Path) -> list[str]:
    """Every frame PngBackend drew, in order (frames.jsonl)."""
    log = tmp_path / "frames" / "frames.jsonl"
    if not log.exists():
        return []
    return [json.loads(line)["screen"] for line in log.read_text().splitlines()]


def patterns(led: SimLed) -> list[str]:
    return [name for _, name in led.timeline]


async def test_info_page_returns_to_the_invite_and_leds_follow_health(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(controller_mod, "INFO_SECONDS", 0.5)
    async with running_app(tmp_path) as app:
        ctl, display, led = setup(app, tmp_path)
        levels_send, levels = trio.open_memory_channel(8)
        async with trio.open_nursery() as nursery:
            await nursery.start(admin.serve_admin, app, ctl.admin_path)
            nursery.start_soon(ctl.run, levels)
            await wait_until(lambda: display.current and display.current[1] == "invite")
            assert patterns(led) == ["booting", "healthy"]
            invite = display.current[0]

            shown_before = len(screens_drawn(tmp_path))
            await levels_send.send(True)
            await trio.sleep(0.2)
            await levels_send.send(False)
            # The frames in the order drawn: a slow machine may miss the info page by polling,
            # but not in this record.
            drawn = lambda: screens_drawn(tmp_path)[shown_before:][:2]  # noqa: E731
            await wait_until(lambda: drawn() == ["info", "invite"])
            assert display.current[1] == "invite"
            assert display.current[0].tobytes() == invite.tobytes()
            assert display.policy.partials == 1  # back to the invite without another full refresh
            nursery.cancel_scope.cancel()


async def test_relay_going_away_shows_error_and_degraded_health_shows_degraded(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(admin_status, "DISK_DEGRADED_PERCENT", 0)  # any disk counts as nearly full
    async with running_app(tmp_path) as app:
        ctl, display, led = setup(app, tmp_path)
        async with trio.open_nursery() as nursery:
            relay_scope = trio.CancelScope()

            async def relay(task_status=trio.TASK_STATUS_IGNORED) -> None:
                with relay_scope:
                    await admin.serve_admin(app, ctl.admin_path, task_status=task_status)

            await nursery.start(relay)
            nursery.start_soon(ctl.run, trio.open_memory_channel(1)[1])
            await wait_until(lambda: patterns(led)[-1:] == ["degraded"])
            assert "data disk" in ctl.invite_content().status
            relay_scope.cancel()
            await wait_until(lambda: patterns(led)[-1:] == ["error"])
            nursery.cancel_scope.cancel()


async def test_a_full_data_disk_is_on_the_invite_screen_and_the_led(tmp_path) -> None:
    async with running_app(tmp_path) as app:
        accounts = dataclasses.replace(app.config.accounts, min_free_disk_space=1 << 60)
        app.config = app.store.config = dataclasses.replace(app.config, accounts=accounts)
        ctl, display, led = setup(app, tmp_path)
        async with trio.open_nursery() as nursery:
            await nursery.start(admin.serve_admin, app, ctl.admin_path)
            nursery.start_soon(ctl.run, trio.open_memory_channel(1)[1])
            await wait_until(lambda: patterns(led)[-1:] == ["degraded"])
            assert ctl.invite_content().status.endswith("· data disk full")
            nursery.cancel_scope.cancel()


async def press(levels_send: trio.MemorySendChannel[bool]) -> None:
    await levels_send.send(True)
    await trio.sleep(0.2)
    await levels_send.send(False)


async def test_a_press_on_the_info_page_shows_the_ss_link_when_shadowsocks_is_on(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(controller_mod, "INFO_SECONDS", 2.0)
    zbarimg = require_tool("zbarimg")
    async with running_app(tmp_path) as app:
        ss = Shadowsocks(port=free_ports(1)[0])
        app.config = app.store.config = dataclasses.replace(app.config, shadowsocks=ss)
        ctl, display, led = setup(app, tmp_path)
        levels_send, levels = trio.open_memory_channel(8)
        async with trio.open_nursery() as nursery:
            await nursery.start(admin.serve_admin, app, ctl.admin_path)
            nursery.start_soon(ctl.run, levels)
            await wait_until(lambda: display.current and display.current[1] == "invite")
            await press(levels_send)
            await wait_until(lambda: display.current[1] == "info")
            await press(levels_send)
            await wait_until(lambda: display.current[1] == "proxy")
            png = tmp_path / "proxy.png"
            display.current[0].save(png)
            await wait_until(lambda: display.current[1] == "invite")
            nursery.cancel_scope.cancel()
    decoded = subprocess.run(
        [zbarimg, "--raw", "-q", str(png)], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    assert decoded == proxy_url(app.config)


async def test_without_shadowsocks_a_second_press_keeps_the_info_page(tmp_path) -> None:
    async with running_app(tmp_path) as app:
        ctl, display, led = setup(app, tmp_path)
        levels_send, levels = trio.open_memory_channel(8)
        async with trio.open_nursery() as nursery:
            await nursery.start(admin.serve_admin, app, ctl.admin_path)
            nursery.start_soon(ctl.run, levels)
            await wait_until(lambda: display.current and display.current[1] == "invite")
            await press(levels_send)
            await wait_until(lambda: display.current[1] == "info")
            await press(levels_send)
            await trio.sleep(0.3)
            assert display.current[1] == "info" and ctl.state.proxy_url is None
            nursery.cancel_scope.cancel()


async def test_a_rolled_back_update_is_shown_once_until_a_press(tmp_path, monkeypatch) -> None:
    """The relay started on the old slot after a failed try says so (relay/core/update/trial.py);
    the panel shows it instead of the invite, with the LED on degraded, until someone presses."""
    monkeypatch.setattr(controller_mod, "INFO_SECONDS", 0.5)
    async with running_app(tmp_path) as app:
        app.update.state = UpdateState(
            state="rolled-back", version="1.0.1", message="1.0.1 did not come up healthy"
        )
        ctl, display, led = setup(app, tmp_path)
        levels_send, levels = trio.open_memory_channel(8)
        async with trio.open_nursery() as nursery:
            await nursery.start(admin.serve_admin, app, ctl.admin_path)
            nursery.start_soon(ctl.run, levels)
            await wait_until(lambda: display.current and display.current[1] == "update")
            expected = screens.render_update(display.size, app.update.status())
            assert display.current[0].tobytes() == expected.tobytes()
            assert patterns(led)[-1] == "degraded"
            await press(levels_send)
            await wait_until(lambda: screens_drawn(tmp_path)[-2:] == ["info", "invite"])
            ctl.update_started()  # another status poll: the news is not shown a second time
            await trio.sleep(0.5)
            assert display.current[1] == "invite"
            assert patterns(led)[-1] == "healthy"
            nursery.cancel_scope.cancel()


async def test_a_relay_that_refused_to_start_is_explained_on_the_panel(
    tmp_path, monkeypatch
) -> None:
    """No relay answers, and it left its reason (relay/start_refusal.py): the panel says that,
    not only that it is being retried."""
    monkeypatch.setattr(controller_mod, "UNREACHABLE_AFTER", 0.0)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    lines = ["The data is from a newer", "version of the relay.", "Nothing was changed."]
    (data_dir / "start-refused.txt").write_text("".join(f"{line}\n" for line in lines))
    ctl, display, led = controller_for(data_dir, tmp_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ctl.run, trio.open_memory_channel(1)[1])
        await wait_until(lambda: display.current and display.current[1] == "message")
        expected = screens.render_message(display.size, "Relay stopped", lines)
        assert display.current[0].tobytes() == expected.tobytes()
        assert patterns(led)[-1] == "error"
        nursery.cancel_scope.cancel()
