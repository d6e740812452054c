"""A RELAYUPDATE stick (a labelled loop device, as in tests/hwctl/test_usb_loop.py) plugged
into a box whose hwctl runs with its simulators against a real relay and a real RAUC system:
hwctl copies the bundle off the read-only mounted stick, the relay installs it into the
inactive slot, and the panel's last frame is the update screen saying so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import trio

from hwctl import epd, screens
from hwctl.controller import Controller
from hwctl.display import Display, PngBackend
from hwctl.leds import Leds, SimLed
from hwctl.usb import DriveHandler
from tests.helpers import RelayServer
from tests.hwctl.test_usb_loop import ServiceSystem, mounted, run, usb_drive
from tests.update.raucsys import RaucSystem


def frames(directory: Path) -> list[dict]:
    log = directory / "frames.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


async def test_a_relayupdate_stick_installs_and_the_panel_shows_it(
    tmp_path: Path, relay_server: RelayServer, rauc_system: RaucSystem
) -> None:
    bundle, root = rauc_system.make_bundle("stick", "2.3")
    data_dir = relay_server.config.data_dir
    display = Display(PngBackend(tmp_path / "frames", epd.PANELS["2in13_v4"]))
    led = SimLed()
    controller = Controller(data_dir / "admin.sock", display, Leds([led]))
    with usb_drive(tmp_path, "ext4", "RELAYUPDATE") as (drive, _image):
        assert drive.role == "update"
        stick = tmp_path / "stick"
        stick.mkdir()
        run("mount", drive.devnode, str(stick))
        shutil.copy(bundle, stick / "relay-2.3.raucb")
        run("umount", str(stick))
        system = ServiceSystem()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(controller.run, trio.open_memory_channel[bool](1)[1])
            with trio.fail_after(20):
                await controller.connected.wait()
            await DriveHandler(controller, data_dir, system, tmp_path / "switch").handle(drive)
            assert not mounted(drive.devnode)  # free to pull once the bundle is copied
            with trio.fail_after(60):
                while controller.state.status.get("update", {}).get("state") != "installed":
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert system.calls == []  # the relay is not stopped for an update
    assert rauc_system.slot(1)[: len(root)] == root
    assert rauc_system.reboots == 1
    update = controller.state.status["update"]
    assert update["version"] == "2.3"
    assert display.current is not None and display.current[1] == "update"
    expected = screens.render_update(display.size, update)
    assert display.current[0].tobytes() == expected.tobytes()
    drawn = frames(tmp_path / "frames")
    assert drawn[-1]["screen"] == "update"
    assert any(f["screen"] == "message" for f in drawn)  # "Update found" while copying
    names = [name for _, name in led.timeline]
    assert "updating" in names and names[-1] == "busy"  # rebooting into the new slot
    assert not (data_dir / "update" / "usb.raucb").exists()
