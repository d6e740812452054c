"""`[update] url`: the relay asks the manifest as it starts (then every check_interval),
downloads the bundle over HTTPS and installs it only if its SHA-256 is the manifest's."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import trio

from hwctl.admin_client import connect
from relay.config import Update
from tests.helpers import RelayServer
from tests.update.fileserver import FileServer
from tests.update.raucsys import RaucSystem


@pytest.fixture
def offered(rauc_system: RaucSystem, file_server: FileServer, request: Any) -> bytes:
    """A 1.5 bundle on the file server, and what the manifest says before the relay starts:
    "right" (1.5, its sha256), "wrong" (another sha256), "older" (0.1), "missing" (404)."""
    bundle, root = rauc_system.make_bundle("offered", "1.5")
    data = bundle.read_bytes()
    file_server.files["/relay/bundle-1.5.raucb"] = data
    right = hashlib.sha256(data).hexdigest()
    manifest = {
        "right": {"version": "1.5", "bundle": "bundle-1.5.raucb", "sha256": right},
        "wrong": {"version": "1.5", "bundle": "bundle-1.5.raucb", "sha256": "ab" * 32},
        "older": {"version": "0.1", "bundle": "bundle-1.5.raucb", "sha256": right},
    }.get(request.param)
    if manifest is not None:
        file_server.files["/relay/manifest.json"] = json.dumps(manifest).encode()
    return root


@pytest.fixture
def update_section(rauc_system: RaucSystem, file_server: FileServer, offered: bytes) -> Update:
    return Update(
        url=file_server.url("/relay/manifest.json"),
        ca_file=str(file_server.ca.path),
        rauc=str(rauc_system.rauc),
        reboot_command=str(rauc_system.reboot),
    )


async def settled(relay: RelayServer) -> dict[str, Any]:
    """The update state once the first check is done."""
    async with connect(relay.config.data_dir / "admin.sock") as admin:
        with trio.fail_after(120):
            while True:
                state = await admin.call("update_status")
                if state["state"] not in ("idle", "downloading", "installing"):
                    return state
                if state["state"] == "idle" and state["message"]:
                    return state
                await trio.sleep(0.02)


@pytest.mark.parametrize("offered", ["right"], indirect=True)
async def test_a_newer_bundle_is_downloaded_and_installed(
    relay_server: RelayServer, rauc_system: RaucSystem, file_server: FileServer, offered: bytes
) -> None:
    state = await settled(relay_server)
    assert state["state"] == "installed", state
    assert state["version"] == "1.5"
    assert rauc_system.slot(1)[: len(offered)] == offered
    assert rauc_system.reboots == 1
    assert file_server.requests == ["/relay/manifest.json", "/relay/bundle-1.5.raucb"]


@pytest.mark.parametrize("offered", ["wrong"], indirect=True)
async def test_a_wrong_sha256_installs_nothing(
    relay_server: RelayServer, rauc_system: RaucSystem, file_server: FileServer, offered: bytes
) -> None:
    slot = rauc_system.slot(1)
    state = await settled(relay_server)
    assert state["state"] == "failed", state
    assert "SHA-256" in state["message"] and "bundle-1.5.raucb" in state["message"]
    assert rauc_system.slot(1) == slot and rauc_system.primary == "A"
    assert rauc_system.reboots == 0
    assert not (relay_server.config.data_dir / "update" / "bundle.raucb").exists()


@pytest.mark.parametrize("offered", ["missing"], indirect=True)
async def test_a_missing_manifest_fails_and_an_admin_retry_installs(
    relay_server: RelayServer, rauc_system: RaucSystem, file_server: FileServer, offered: bytes
) -> None:
    """A 404 ends in failed naming it; the admin socket's install from a URL then works (the
    same path the next check takes)."""
    state = await settled(relay_server)
    assert state["state"] == "failed" and "HTTP 404" in state["message"], state
    file_server.files["/relay/manifest.json"] = json.dumps(
        {
            "version": "1.5",
            "bundle": file_server.url("/relay/bundle-1.5.raucb"),
            "sha256": hashlib.sha256(file_server.files["/relay/bundle-1.5.raucb"]).hexdigest(),
        }
    ).encode()
    async with connect(relay_server.config.data_dir / "admin.sock") as admin:
        await admin.call("update_install", url=file_server.url("/relay/manifest.json"))
    state = await settled(relay_server)
    assert state["state"] == "installed", state
    assert rauc_system.slot(1)[: len(offered)] == offered


@pytest.mark.parametrize("offered", ["older"], indirect=True)
async def test_nothing_newer_is_not_downloaded(
    relay_server: RelayServer, rauc_system: RaucSystem, file_server: FileServer, offered: bytes
) -> None:
    state = await settled(relay_server)
    assert state["state"] == "idle" and "up to date" in state["message"], state
    assert file_server.requests == ["/relay/manifest.json"]
