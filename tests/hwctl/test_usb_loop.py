"""USB drives as real block devices: loop devices formatted and labelled RELAYDATA or
RELAYBACKUP, mounted by hwctl's own System; "pulling" one shrinks it to nothing under the
mounted file system (its backing file truncated, `losetup -c`), so every further I/O fails.
Only stopping, starting and rebooting the relay are faked."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hwctl import backup, usb
from hwctl.usb import Drive, DriveHandler
from tests.helpers import need
from tests.hwctl.test_usb import FakeController

TOOLS = ("losetup", "blkid", "mkfs.ext4", "mkfs.vfat", "mount", "umount")


class ServiceSystem(usb.System):
    """Real mount and unmount; the relay's unit and the reboot recorded."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def stop_relay(self) -> None:
        self.calls.append("stop")

    def start_relay(self) -> None:
        self.calls.append("start")

    def reboot(self) -> None:
        self.calls.append("reboot")


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


@contextmanager
def usb_drive(tmp_path: Path, fs: str, label: str) -> Iterator[tuple[Drive, str]]:
    """A 64 MiB drive; yields the udev-like Drive and its backing file."""
    need(os.geteuid() == 0, "loop and device-mapper devices need root")
    need(all(shutil.which(t) for t in TOOLS), f"needs {' '.join(TOOLS)}")
    image = tmp_path / f"{label}.img"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    loop = subprocess.run(
        ["losetup", "-f", "--show", str(image)], capture_output=True, text=True, timeout=60
    ).stdout.strip()
    need(bool(loop), "no loop device available")
    try:
        if fs == "ext4":
            run("mkfs.ext4", "-q", "-F", "-L", label, loop)
        else:
            run("mkfs.vfat", "-I", "-n", label, loop)
        probe = {
            k: run("blkid", "-p", "-o", "value", "-s", k, loop).strip()
            for k in ("LABEL", "UUID", "TYPE")
        }
        assert probe["LABEL"] == label  # the label is really on the device
        yield Drive(action="add", devnode=loop, label=probe["LABEL"], fs_type=probe["TYPE"],
                    bus="usb", uuid=probe["UUID"]), str(image)  # fmt: skip
    finally:
        subprocess.run(["losetup", "-d", loop], capture_output=True, timeout=60)


def pull(devnode: str, image: str) -> None:
    """The drive is gone: the device shrinks to nothing, every further read and write fails."""
    os.truncate(image, 0)
    run("losetup", "-c", devnode)


def mounted(devnode: str) -> bool:
    real = os.path.realpath(devnode)
    return any(
        line.split()[0] in (devnode, real) for line in Path("/proc/mounts").read_text().splitlines()
    )


@contextmanager
def mounted_at(devnode: str, tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "check"
    target.mkdir(exist_ok=True)
    run("mount", "-o", "ro", devnode, str(target))
    try:
        yield target
    finally:
        run("umount", str(target))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "segments").mkdir(parents=True)
    for i in range(40):
        (data / "segments" / f"{i:03d}.seg").write_bytes(os.urandom(200_000))
    (data / "index.sqlite").write_bytes(b"index")
    return data


async def test_a_relaydata_drive_gets_a_verified_copy_and_becomes_the_data_disk(
    tmp_path: Path, data_dir: Path
) -> None:
    switch = tmp_path / "boot" / "relay-data-device"
    switch.parent.mkdir()
    with usb_drive(tmp_path, "ext4", "RELAYDATA") as (drive, _):
        system, controller = ServiceSystem(), FakeController()
        await DriveHandler(controller, data_dir, system, switch).handle(drive)
        assert system.calls == ["stop", "reboot"]
        assert not mounted(drive.devnode)  # hwctl unmounted it before the reboot
        with mounted_at(drive.devnode, tmp_path) as disk:
            for path in data_dir.rglob("*"):
                if path.is_file():
                    copy = disk / "relay" / path.relative_to(data_dir)
                    assert copy.read_bytes() == path.read_bytes()
            assert (disk / usb.MARKER).read_text() == f"UUID={drive.uuid}\n"
    assert switch.read_text() == f"UUID={drive.uuid}\n"


async def test_a_relaydata_drive_pulled_mid_copy_leaves_the_box_on_its_sd_card(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = tmp_path / "boot" / "relay-data-device"
    switch.parent.mkdir()
    with usb_drive(tmp_path, "ext4", "RELAYDATA") as (drive, image):
        real_copy, copied = shutil.copyfileobj, []

        def pull_after_five_files(fin, fout, length=0):
            if len(copied) == 5:
                pull(drive.devnode, image)
            copied.append(fin.name)
            real_copy(fin, fout, length)

        monkeypatch.setattr(usb.shutil, "copyfileobj", pull_after_five_files)
        system, controller = ServiceSystem(), FakeController()
        await DriveHandler(controller, data_dir, system, switch).handle(drive)
        assert system.calls == ["stop", "start"]  # the relay back on its SD card, no reboot
        assert not switch.exists()
        assert controller.notices[-1][1] == "Data not moved"
        assert not mounted(drive.devnode)  # the lazy unmount of a dead drive did not hang


async def test_a_relaybackup_drive_gets_an_identity_only_the_code_opens(
    tmp_path: Path, data_dir: Path
) -> None:
    identity = {"config": "mail_domain = 'x'", "accounts": [["a@x", "$argon2id$..."]]}
    # ext4: this kernel has no vfat module (a FAT stick mounts the same way through System)
    with usb_drive(tmp_path, "ext4", "RELAYBACKUP") as (drive, _):
        assert drive.role == "backup"
        system, controller = ServiceSystem(), FakeController(identity)
        await DriveHandler(controller, data_dir, system, tmp_path / "switch").handle(drive)
        assert system.calls == []  # the relay never stops for a backup
        assert not mounted(drive.devnode)
        code = controller.notices[-1][2][1]
        with mounted_at(drive.devnode, tmp_path) as disk:
            [blob] = [p for p in disk.iterdir() if p.suffix == ".backup"]
            assert backup.decrypt(blob.read_bytes(), code) == identity
