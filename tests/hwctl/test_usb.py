"""USB drives with faked udev events and a faked mount: data move, yanking, encrypted backups."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hwctl import backup, usb
from hwctl.usb import Drive, DriveHandler


def drive(role_label: str, action: str = "add", bus: str = "usb", uuid: str = "1234-ABCD") -> Drive:
    return Drive(
        action=action, devnode="/dev/sda1", label=role_label, fs_type="ext4", bus=bus, uuid=uuid
    )


class FakeSystem(usb.System):
    """'Mounting' points the mount directory at a directory standing in for the drive."""

    def __init__(self, drive_dir: Path) -> None:
        self.drive_dir = drive_dir
        self.calls: list[str] = []

    def mount(self, devnode: str, target: Path) -> None:
        self.calls.append("mount")
        target.rmdir()
        target.symlink_to(self.drive_dir)

    def unmount(self, target: Path) -> None:
        self.calls.append("unmount")
        target.unlink()
        target.mkdir()

    def stop_relay(self) -> None:
        self.calls.append("stop")

    def start_relay(self) -> None:
        self.calls.append("start")

    def reboot(self) -> None:
        self.calls.append("reboot")


class FakeController:
    def __init__(self, identity: dict | None = None) -> None:
        self.notices: list[tuple[str, str, list[str]]] = []
        self.identity = identity

    async def notice(self, led: str, title: str, lines: list[str]) -> None:
        self.notices.append((led, title, lines))

    async def admin_call(self, method: str, **params) -> dict:
        assert method == "identity_export"
        return self.identity


@pytest.fixture
def box(tmp_path: Path):
    data_dir = tmp_path / "data"
    (data_dir / "segments").mkdir(parents=True)
    for i in range(5):
        (data_dir / "segments" / f"{i}.seg").write_bytes(os.urandom(50_000))
    (data_dir / "index.sqlite").write_bytes(b"index")
    drive_dir = tmp_path / "usbdrive"
    drive_dir.mkdir()
    return data_dir, drive_dir, tmp_path / "boot" / "relay-data-device"


def test_only_labelled_usb_partitions_are_handled() -> None:
    assert drive("RELAYDATA").role == "data"
    assert drive("relaybackup").role == "backup"
    assert drive("PHOTOS").role is None
    assert drive("RELAYDATA", bus="ata").role is None  # an internal disk with that label


async def test_data_drive_gets_a_verified_copy_then_becomes_the_data_disk(box) -> None:
    data_dir, drive_dir, switch = box
    switch.parent.mkdir()
    system, controller = FakeSystem(drive_dir), FakeController()
    await DriveHandler(controller, data_dir, system, switch).handle(drive("RELAYDATA"))
    assert system.calls == ["mount", "stop", "unmount", "reboot"]
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert (
                drive_dir / "relay" / path.relative_to(data_dir)
            ).read_bytes() == path.read_bytes()
    assert (drive_dir / usb.MARKER).read_text() == "UUID=1234-ABCD\n"
    assert switch.read_text() == "UUID=1234-ABCD\n"
    assert [n[1] for n in controller.notices] == ["Moving data to USB", "Data moved to USB"]


async def test_drive_pulled_during_the_copy_leaves_the_box_on_its_old_data(
    box, monkeypatch
) -> None:
    data_dir, drive_dir, switch = box
    switch.parent.mkdir()
    real_copy = shutil.copyfileobj
    copied = []

    def yank_after_two_files(fin, fout, length=0):
        if len(copied) == 2:
            raise OSError(5, "Input/output error")
        copied.append(fin.name)
        real_copy(fin, fout, length)

    monkeypatch.setattr(usb.shutil, "copyfileobj", yank_after_two_files)
    system, controller = FakeSystem(drive_dir), FakeController()
    await DriveHandler(controller, data_dir, system, switch).handle(drive("RELAYDATA"))
    assert system.calls == ["mount", "stop", "start", "unmount"]  # relay back on, no reboot
    assert not switch.exists() and not (drive_dir / usb.MARKER).exists()
    assert controller.notices[-1][1] == "Data not moved"


async def test_a_copy_that_reads_back_different_is_not_used(box, monkeypatch) -> None:
    data_dir, drive_dir, switch = box
    switch.parent.mkdir()
    real_copy = shutil.copyfileobj

    def flip_a_bit(fin, fout, length=0):
        real_copy(fin, fout, length)
        if fin.name.endswith("3.seg"):
            fout.seek(100)
            fout.write(b"\x00")

    monkeypatch.setattr(usb.shutil, "copyfileobj", flip_a_bit)
    system = FakeSystem(drive_dir)
    await DriveHandler(FakeController(), data_dir, system, switch).handle(drive("RELAYDATA"))
    assert "reboot" not in system.calls and not switch.exists()


async def test_pulling_the_active_data_drive_stops_the_relay_and_replug_reboots(box) -> None:
    data_dir, drive_dir, switch = box
    switch.parent.mkdir()
    switch.write_text("UUID=1234-ABCD\n")
    system, controller = FakeSystem(drive_dir), FakeController()
    handler = DriveHandler(controller, data_dir, system, switch)
    await handler.handle(drive("RELAYDATA", action="remove"))
    assert system.calls == ["stop"] and controller.notices[-1][1] == "Data drive removed"
    await handler.handle(drive("RELAYDATA"))
    assert system.calls == ["stop", "reboot"]
    await handler.handle(drive("OTHER", action="remove", uuid="9999"))
    assert system.calls == ["stop", "reboot"]


async def test_backup_drive_gets_an_encrypted_identity_that_only_the_code_opens(box) -> None:
    data_dir, drive_dir, switch = box
    identity = {"domain": "10.0.0.2", "files": {"tls/key.pem": "c2VjcmV0"}, "accounts": []}
    system, controller = FakeSystem(drive_dir), FakeController(identity)
    await DriveHandler(controller, data_dir, system, switch).handle(drive("RELAYBACKUP"))
    files = list(drive_dir.glob("relay-identity-*.backup"))
    assert len(files) == 1 and not list(drive_dir.glob("*.part"))
    blob = files[0].read_bytes()
    assert b"secret" not in blob and b"c2VjcmV0" not in blob
    led, title, lines = controller.notices[-1]
    code = lines[-1]
    assert (led, title) == ("healthy", "Backup written") and code == backup.backup_code(data_dir)
    assert backup.decrypt(blob, code) == identity
    assert backup.decrypt(blob, code.lower().replace("-", " ")) == identity  # as typed by a person
    with pytest.raises(backup.BackupError):
        backup.decrypt(blob, "AAAA-BBBB-CCCC-DDDD-EEEE")
    assert system.calls == ["mount", "unmount"]  # the relay never stops for a backup
