"""What the relay says, after the reboot, about the update installed before it: it runs, it was
rolled back, or the reboot has not happened yet. A real RAUC system; the relay is stopped and
started again on the same data as the reboot would, and the boot id recorded at the install
is set to another boot's where a reboot happened in between."""

from __future__ import annotations

import json
from typing import Any

import trio

from hwctl.admin_client import connect
from relay.config import Config
from tests.helpers import serving
from tests.update.raucsys import RaucSystem

FLASHED = "0.1.0"  # the relay's own version: what a card runs before its first update


async def update_status(config: Config) -> dict[str, Any]:
    async with connect(config.data_dir / "admin.sock") as admin:
        return await admin.call("update_status")


async def install(config: Config, rauc_system: RaucSystem, version: str) -> None:
    bundle, _root = rauc_system.make_bundle(version, version)
    async with serving(config):
        async with connect(config.data_dir / "admin.sock") as admin:
            await admin.call("update_install", path=str(bundle))
        with trio.fail_after(120):
            while (await update_status(config))["state"] == "installing":
                await trio.sleep(0.05)
        assert (await update_status(config))["state"] == "installed"


def reboot(config: Config) -> None:
    """The record of the install now names an earlier boot, as it does after a reboot."""
    record = config.data_dir / "update" / "tried.json"
    tried = json.loads(record.read_text())
    record.write_text(json.dumps({**tried, "boot_id": "an-earlier-boot"}))


async def test_a_relay_restarted_before_the_reboot_still_waits_for_it(
    relay_config: Config, rauc_system: RaucSystem
) -> None:
    await install(relay_config, rauc_system, "1.0.1")
    async with serving(relay_config):
        state = await update_status(relay_config)
    assert state["state"] == "installed" and state["version"] == "1.0.1"
    assert "waiting for the reboot" in state["message"]


async def test_the_new_slot_says_it_was_updated(
    relay_config: Config, rauc_system: RaucSystem
) -> None:
    await install(relay_config, rauc_system, "1.0.1")
    reboot(relay_config)
    rauc_system.boot("B")  # the try of the new slot
    async with serving(relay_config):
        state = await update_status(relay_config)
    assert state["state"] == "updated", state
    assert state["message"] == f"1.0.1 runs, updated from {FLASHED}"
    # Kept while the slot is on trial: a rollback after this start is still told.
    assert (relay_config.data_dir / "update" / "tried.json").exists()


async def test_the_old_slot_reports_the_rollback_then_forgets_it(
    relay_config: Config, rauc_system: RaucSystem
) -> None:
    await install(relay_config, rauc_system, "1.0.1")
    reboot(relay_config)  # the try of B failed: the firmware started A again
    async with serving(relay_config):
        state = await update_status(relay_config)
        async with connect(relay_config.data_dir / "admin.sock") as admin:
            status = await admin.call("status")
    assert state["state"] == "rolled-back" and state["version"] == "1.0.1"
    assert f"back on {FLASHED}" in state["message"] and "nothing lost" in state["message"]
    assert status["update"] == state  # what the display and the dashboard read
    async with serving(relay_config):  # the boot after that: the invite, not old news
        assert (await update_status(relay_config))["state"] == "idle"


async def test_an_unreadable_record_is_dropped(relay_config: Config) -> None:
    record = relay_config.data_dir / "update" / "tried.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"version": ')  # cut by a power loss on a disk without barriers
    async with serving(relay_config):
        assert (await update_status(relay_config))["state"] == "idle"
    assert not record.exists()
