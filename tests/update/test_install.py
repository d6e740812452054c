"""Installing bundles through the relay's admin socket into a real RAUC system: the inactive
slot gets the bundle's root image and the reboot command runs; a bundle signed by another CA,
for another compatible or with a version not newer than the running one is refused and
leaves both slots as they were."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import trio

from hwctl.admin_client import AdminError, connect
from relay.config import to_toml
from tests.helpers import RelayServer
from tests.update.raucsys import SLOT_SIZE, RaucSystem


async def install(relay: RelayServer, **params: Any) -> list[dict[str, Any]]:
    """Start an install on the admin socket; every distinct state seen until it is done."""
    seen: list[dict[str, Any]] = []
    async with connect(relay.config.data_dir / "admin.sock") as admin:
        first = await admin.call("update_install", **params)
        seen.append(first)
        with trio.fail_after(120):
            while True:
                state = await admin.call("update_status")
                if state != seen[-1]:
                    seen.append(state)
                if state["state"] not in ("downloading", "installing"):
                    return seen
                await trio.sleep(0.01)


async def test_a_good_bundle_goes_into_the_inactive_slot_and_reboots(
    relay_server: RelayServer, rauc_system: RaucSystem
) -> None:
    bundle, root = rauc_system.make_bundle("good", "1.0.1")
    booted_before = rauc_system.slot(0)
    seen = await install(relay_server, path=str(bundle))
    states = [s["state"] for s in seen]
    assert states[0] == "installing" and states[-1] == "installed", seen
    assert "failed" not in states
    assert seen[-1]["version"] == "1.0.1" and seen[-1]["progress"] == 100
    assert any(0 < s["progress"] < 100 for s in seen), "no progress between start and end"
    assert rauc_system.slot(1) == root + bytes(SLOT_SIZE - len(root))
    assert rauc_system.slot(0) == booted_before  # the running slot is never written
    assert rauc_system.primary == "B"  # the next boot tries the new slot
    assert rauc_system.reboots == 1
    # the admin status carries it, for the display and the dashboard
    async with connect(relay_server.config.data_dir / "admin.sock") as admin:
        status = await admin.call("status")
    assert status["update"]["state"] == "installed"
    assert not (relay_server.config.data_dir / "update" / "bundle.raucb").exists()


@pytest.mark.parametrize(
    ("version", "compatible", "other_ca", "reason"),
    [
        ("2.0", "chatmail-relay-appliance", True, "signature"),
        ("2.0", "some-other-box", False, "some-other-box"),
        ("0.0.9", "chatmail-relay-appliance", False, "not newer than 0.1.0"),
        ("0.1.0", "chatmail-relay-appliance", False, "not newer than 0.1.0"),
    ],
    ids=["other-ca", "other-compatible", "older", "same-version"],
)
async def test_a_wrong_bundle_is_refused_and_no_slot_changes(
    relay_server: RelayServer,
    rauc_system: RaucSystem,
    version: str,
    compatible: str,
    other_ca: bool,
    reason: str,
) -> None:
    keys = rauc_system.dir / "other-keys" if other_ca else None
    bundle, _root = rauc_system.make_bundle("wrong", version, compatible=compatible, keys=keys)
    slots = rauc_system.slot(0), rauc_system.slot(1)
    seen = await install(relay_server, path=str(bundle))
    assert seen[-1]["state"] == "failed", seen
    assert reason in seen[-1]["message"]
    assert "refused" in seen[-1]["message"] or "signature" in seen[-1]["message"]
    assert (rauc_system.slot(0), rauc_system.slot(1)) == slots
    assert rauc_system.primary == "A"
    assert rauc_system.reboots == 0


async def test_the_running_slots_version_counts_once_installed(
    relay_server: RelayServer, rauc_system: RaucSystem
) -> None:
    """After an install the inactive slot holds 1.2; the booted one still runs the flashed
    version, so 1.1 is newer than that and installs again (into the same inactive slot)."""
    first, _ = rauc_system.make_bundle("first", "1.2")
    assert (await install(relay_server, path=str(first)))[-1]["state"] == "installed"
    second, root = rauc_system.make_bundle("second", "1.1")
    assert (await install(relay_server, path=str(second)))[-1]["state"] == "installed"
    assert rauc_system.slot(1)[: len(root)] == root


async def test_bad_parameters_are_refused(
    relay_server: RelayServer, rauc_system: RaucSystem, tmp_path: Any
) -> None:
    async with connect(relay_server.config.data_dir / "admin.sock") as admin:
        for params, message in [
            ({}, "either path"),
            ({"path": "relative.raucb"}, "absolute path"),
            ({"path": str(tmp_path / "missing.raucb")}, "no bundle file"),
            ({"url": "http://example.org/m.json"}, "https://"),
            ({"path": "/x", "url": "https://example.org/"}, "either path"),
        ]:
            with pytest.raises(AdminError, match=message):
                await admin.call("update_install", **params)
        assert (await admin.call("update_status"))["state"] == "idle"


async def test_the_relay_command_installs_and_tells_the_state(
    relay_server: RelayServer, rauc_system: RaucSystem, tmp_path: Any
) -> None:
    config_file = tmp_path / "relay.toml"
    config_file.write_text(to_toml(relay_server.config))
    bundle, root = rauc_system.make_bundle("cli", "1.4")

    def relay(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "relay", *args, "--config", str(config_file)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    done = await trio.to_thread.run_sync(relay, "update", "install", str(bundle))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("installed 1.4 ("), done.stdout
    assert rauc_system.slot(1)[: len(root)] == root
    status = await trio.to_thread.run_sync(relay, "update", "status")
    assert status.stdout.startswith("installed 1.4"), status.stdout
    older, _ = rauc_system.make_bundle("older", "0.0.5")
    refused = await trio.to_thread.run_sync(relay, "update", "install", str(older))
    assert refused.returncode == 1
    assert refused.stdout.splitlines()[-1].startswith("failed 0.0.5 (bundle refused: version")
