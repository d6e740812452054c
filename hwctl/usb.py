"""USB drives: a RELAYDATA drive takes over the data store, a RELAYBACKUP drive gets an
encrypted identity backup, a RELAYUPDATE drive's update bundle is installed; anything else is
ignored.

An update: the drive is mounted read-only, its one `*.raucb` copied (size bounded) into the
relay's update folder and given to the relay's user (RAUC leases the file, which only its owner
may), the drive unmounted (it may be pulled from then on), and the relay asked to install it;
the controller then follows the relay's update state on the display and the LEDs.

Moving the data: the relay is stopped, the data directory copied onto the drive, every file read
back and compared, and only then the drive is marked and chosen as /data for the next boot (the
switch file the image's mount unit reads). A drive pulled at any point before that leaves the
box on its old data, unchanged. Pulling the drive that holds /data stops the relay at once so it
does not keep failing writes; plugging it back restarts the box onto it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from hwctl import backup
from hwctl.admin_client import AdminError

DATA_LABEL = "RELAYDATA"
BACKUP_LABEL = "RELAYBACKUP"
UPDATE_LABEL = "RELAYUPDATE"
MAX_BUNDLE = 1 << 30  # the relay's default [update] max_bundle_size
STICK_BUNDLE = "update/usb.raucb"  # in the data dir; the relay takes it over from there
RELAY_UNIT = "chatmail-relay.service"
MARKER = ".relay-data"  # written last on a data drive: its presence means the copy is complete
DEFAULT_SWITCH_FILE = Path("/boot/chatmail-data-device")  # read by the boot-time data mount


@dataclass(frozen=True)
class Drive:
    action: str  # "add" | "remove"
    devnode: str
    label: str
    fs_type: str
    bus: str
    uuid: str

    @property
    def role(self) -> str | None:
        """data, backup, or None for drives hwctl must leave alone."""
        if self.bus != "usb" or not self.fs_type:
            return None
        roles = {DATA_LABEL: "data", BACKUP_LABEL: "backup", UPDATE_LABEL: "update"}
        return roles.get(self.label.upper())


def drive_from_udev(device) -> Drive:
    props = device.properties
    return Drive(
        action=device.action or "add",
        devnode=device.device_node or "",
        label=props.get("ID_FS_LABEL", ""),
        fs_type=props.get("ID_FS_TYPE", ""),
        bus=props.get("ID_BUS", ""),
        uuid=props.get("ID_FS_UUID", ""),
    )


class System:
    """The privileged operations, behind one small interface so tests can fake them."""

    def mount(self, devnode: str, target: Path, *, read_only: bool = False) -> None:
        options = "ro,noatime" if read_only else "noatime"
        subprocess.run(["mount", "-o", options, devnode, str(target)], check=True)

    def unmount(self, target: Path) -> None:
        # Lazy: a yanked drive cannot be unmounted cleanly, but must not block us.
        subprocess.run(["umount", "-l", str(target)], check=False)

    def stop_relay(self) -> None:
        subprocess.run(["systemctl", "stop", RELAY_UNIT], check=True)

    def start_relay(self) -> None:
        subprocess.run(["systemctl", "start", RELAY_UNIT], check=True)

    def reboot(self) -> None:
        subprocess.run(["systemctl", "reboot"], check=False)


class CopyError(Exception):
    pass


class UpdateDriveError(Exception):
    """What is wrong with an update drive, said for the display."""


def take_bundle(mount: Path, data_dir: Path) -> Path:
    """Copy the drive's one bundle into the data dir, owned by the data dir's owner."""
    bundles = sorted(p for p in mount.glob("*.raucb") if p.is_file())
    if len(bundles) != 1:
        found = "no .raucb file" if not bundles else f"{len(bundles)} .raucb files"
        raise UpdateDriveError(f"{found} on the drive")
    if bundles[0].stat().st_size > MAX_BUNDLE:
        raise UpdateDriveError(f"{bundles[0].name} is too big")
    owner = data_dir.stat()
    target = data_dir / STICK_BUNDLE
    target.parent.mkdir(mode=0o700, exist_ok=True)
    os.chown(target.parent, owner.st_uid, owner.st_gid)
    with open(bundles[0], "rb") as fin, open(target, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    os.chown(target, owner.st_uid, owner.st_gid)
    return target


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def copy_verified(src: Path, dst: Path, progress=lambda done, total: None) -> int:
    """Copy a tree, fsync every file, then read everything back and compare; returns bytes."""
    files = [p for p in sorted(src.rglob("*")) if p.is_file() and not p.is_symlink()]
    files = [p for p in files if p.name != "admin.sock"]
    total = sum(p.stat().st_size for p in files)
    done = 0
    for path in files:
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as fin, open(target, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copystat(path, target)
        done += path.stat().st_size
        progress(done, total)
    os.sync()  # directory entries too, before we trust the copy
    for path in files:
        if file_digest(path) != file_digest(dst / path.relative_to(src)):
            raise CopyError(f"{path.relative_to(src)} differs after copying")
    return total


class DriveHandler:
    def __init__(self, controller, data_dir: Path, system: System, switch_file: Path) -> None:
        self.controller = controller
        self.data_dir = data_dir
        self.system = system
        self.switch_file = switch_file
        self.busy = False

    def active_uuid(self) -> str:
        try:
            return self.switch_file.read_text().strip().removeprefix("UUID=")
        except OSError:
            return ""

    async def handle(self, drive: Drive) -> None:
        if drive.role is None or self.busy:
            return
        if drive.action == "remove":
            if drive.role == "data" and drive.uuid == self.active_uuid():
                await trio.to_thread.run_sync(self.system.stop_relay)
                await self.controller.notice(
                    "error", "Data drive removed", ["Mail is stopped.", "Plug the drive back in."]
                )
            return
        self.busy = True
        try:
            if drive.role == "data":
                await self.adopt_data_drive(drive)
            elif drive.role == "update":
                await self.install_update(drive)
            else:
                await self.write_backup(drive)
        finally:
            self.busy = False

    async def adopt_data_drive(self, drive: Drive) -> None:
        if drive.uuid and drive.uuid == self.active_uuid():
            # Our data drive came back after being pulled: boot onto it again.
            await trio.to_thread.run_sync(self.system.reboot)
            return
        await self.controller.notice(
            "busy", "Moving data to USB", ["Mail is paused.", "Do not unplug."]
        )
        with tempfile.TemporaryDirectory(prefix="hwctl-usb-") as mnt:
            mount = Path(mnt)
            await trio.to_thread.run_sync(self.system.mount, drive.devnode, mount)
            try:
                await trio.to_thread.run_sync(self.system.stop_relay)
                try:
                    target = mount / "relay"
                    await trio.to_thread.run_sync(copy_verified, self.data_dir, target)
                    (mount / MARKER).write_text(f"UUID={drive.uuid}\n")
                    os.sync()
                    self.switch_file.write_text(f"UUID={drive.uuid}\n")
                except (OSError, CopyError) as e:
                    await trio.to_thread.run_sync(self.system.start_relay)
                    await self.controller.notice(
                        "error", "Data not moved", ["The SD card keeps the data.", str(e)[:40]]
                    )
                    return
            finally:
                await trio.to_thread.run_sync(self.system.unmount, mount)
        await self.controller.notice("busy", "Data moved to USB", ["Restarting onto the drive..."])
        await trio.to_thread.run_sync(self.system.reboot)

    async def write_backup(self, drive: Drive) -> None:
        await self.controller.notice("busy", "Writing backup", ["Do not unplug."])
        try:
            identity = await self.controller.admin_call("identity_export")
            code = backup.backup_code(self.data_dir)
            blob = await trio.to_thread.run_sync(backup.encrypt, identity, code)
            with tempfile.TemporaryDirectory(prefix="hwctl-usb-") as mnt:
                mount = Path(mnt)
                await trio.to_thread.run_sync(self.system.mount, drive.devnode, mount)
                try:
                    await trio.to_thread.run_sync(backup.write_file, mount, blob)
                finally:
                    await trio.to_thread.run_sync(self.system.unmount, mount)
        except Exception as e:  # the drive may be pulled at any moment; nothing on the box changed
            await self.controller.notice("error", "Backup failed", [str(e)[:40]])
            return
        await self.controller.notice("healthy", "Backup written", ["Restore code:", code])

    async def install_update(self, drive: Drive) -> None:
        await self.controller.notice(
            "updating", "Update found", ["Reading the drive...", "Do not unplug."]
        )
        try:
            with tempfile.TemporaryDirectory(prefix="hwctl-usb-") as mnt:
                mount = Path(mnt)
                await trio.to_thread.run_sync(
                    partial(self.system.mount, drive.devnode, mount, read_only=True)
                )
                try:
                    bundle = await trio.to_thread.run_sync(take_bundle, mount, self.data_dir)
                finally:
                    await trio.to_thread.run_sync(self.system.unmount, mount)
            await self.controller.admin_call("update_install", path=str(bundle))
        except (OSError, subprocess.CalledProcessError, UpdateDriveError, AdminError) as e:
            await self.controller.notice("error", "Update not started", [str(e)[:40]])
            return
        self.controller.update_started()


async def watch_usb(controller, data_dir: Path, switch_file: Path = DEFAULT_SWITCH_FILE) -> None:
    """Follow udev block events and hand USB drives to the DriveHandler, one at a time: file
    systems on a partition, and on a whole stick without a partition table (as `mkfs.vfat
    /dev/sdX` makes them; the disk of a partitioned stick carries no file system, no role)."""
    import pyudev

    context = pyudev.Context()
    monitor = pyudev.Monitor.from_netlink(context)
    monitor.filter_by("block")
    monitor.start()
    handler = DriveHandler(controller, data_dir, System(), switch_file)
    while True:
        await trio.lowlevel.wait_readable(monitor.fileno())
        while (device := monitor.poll(timeout=0)) is not None:
            await handler.handle(drive_from_udev(device))
