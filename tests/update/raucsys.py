"""A real RAUC system in a temporary directory, for the update tests.

A private D-Bus system bus (dbus-daemon with a permissive policy on a unix socket here), the
real `rauc service` on it with a system.conf like the appliance's: two raw root slots
rootfs.0/rootfs.1 (plain files), booted from rootfs.0 (`--override-boot-slot`; `boot("B")`
restarts the service as a reboot into rootfs.1 would), a custom
bootloader backend (a shell script keeping the primary slot and each slot's good/bad state in
files here), and the development CA of image/make-bundle.sh as keyring. Bundles are made by
image/make-bundle.sh itself. `rauc` is a wrapper the relay's `[update] rauc` points at: it
talks to this bus and reads this system.conf; `reboot` records that it ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import need

REPO = Path(__file__).resolve().parent.parent.parent
MAKE_BUNDLE = REPO / "image" / "make-bundle.sh"
COMPATIBLE = "chatmail-relay-appliance"
SLOT_SIZE = 4 << 20
ROOT_SIZE = 1 << 20

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

# RAUC's custom bootloader backend: get-primary, set-primary SLOT, get-state SLOT,
# set-state SLOT good|bad, get-current (the bootname the running system came from).
BOOT_BACKEND = """#!/bin/sh
dir={dir}
case "$1" in
    get-primary) cat "$dir/primary" ;;
    set-primary) echo "$2" > "$dir/primary" ;;
    get-state) cat "$dir/state.$2" 2>/dev/null || echo good ;;
    set-state) echo "$3" > "$dir/state.$2" ;;
    get-current) echo A ;;
    *) exit 1 ;;
esac
"""

SYSTEM_CONF = """[system]
compatible={compatible}
bootloader=custom
mountprefix={dir}/mnt
statusfile={dir}/status.raucs

[handlers]
bootloader-custom-backend={dir}/boot-backend

[keyring]
path={keyring}

[slot.rootfs.0]
device={dir}/rootfs.0
type=raw
bootname=A

[slot.rootfs.1]
device={dir}/rootfs.1
type=raw
bootname=B
"""


@dataclass
class RaucSystem:
    dir: Path
    keys: Path  # the development CA and signing pair (make-bundle.sh's DEV_KEYS_DIR)
    rauc: Path  # the wrapper for [update] rauc
    reboot: Path  # the recorder for [update] reboot_command
    bus: str  # the private system bus's address
    processes: list[subprocess.Popen[bytes]]

    @property
    def reboots(self) -> int:
        log = self.dir / "reboots"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def slot(self, index: int) -> bytes:
        return (self.dir / f"rootfs.{index}").read_bytes()

    @property
    def primary(self) -> str:
        return (self.dir / "primary").read_text().strip()

    def make_bundle(
        self, name: str, version: str, *, compatible: str = COMPATIBLE, keys: Path | None = None
    ) -> tuple[Path, bytes]:
        """A bundle signed by `keys` (default: the dev CA's) and the root image inside it."""
        root = os.urandom(ROOT_SIZE)
        image = self.dir / f"{name}.rootfs"
        image.write_bytes(root)
        out = self.dir / f"{name}.raucb"
        env = {**os.environ, "COMPATIBLE": compatible, "DEV_KEYS_DIR": str(keys or self.keys)}
        subprocess.run(
            [str(MAKE_BUNDLE), str(out), str(image), version],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        return out, root

    def boot(self, bootname: str) -> None:
        """(Re)start the RAUC service as the system booted from slot `bootname` sees it."""
        if len(self.processes) > 1:  # the bus stays, the service of the last boot goes
            service = self.processes.pop()
            service.terminate()
            service.wait(timeout=10)
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus}
        with open(self.dir / "rauc-service.log", "ab") as log:
            self.processes.append(
                subprocess.Popen(
                    [
                        "rauc",
                        "service",
                        f"--conf={self.dir / 'system.conf'}",
                        f"--override-boot-slot={bootname}",
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
        _wait(
            lambda: (
                subprocess.run([str(self.rauc), "status"], capture_output=True, timeout=10)
                .returncode == 0
            ),
            "rauc service did not answer on the bus",
        )  # fmt: skip

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        subprocess.run(["umount", "-R", str(self.dir / "mnt")], capture_output=True, timeout=30)


def permissive_bus(socket: Path) -> str:
    return BUS_CONFIG.format(socket=socket)


def start(
    directory: Path,
    *,
    socket: Path | None = None,
    bus_config: Callable[[Path], str] = permissive_bus,
) -> RaucSystem:
    """The bus listens at `socket` (default: in `directory`) with `bus_config(socket)`."""
    need(bool(shutil.which("rauc")), "needs rauc (Debian package rauc)")
    need(bool(shutil.which("dbus-daemon")), "needs dbus-daemon (Debian package dbus)")
    need(os.geteuid() == 0, "rauc mounts bundles on loop devices: needs root")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "mnt").mkdir()
    keys = directory / "dev-keys"
    keyring = subprocess.run(
        [str(MAKE_BUNDLE), "--dev-keyring", str(keys)],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    for index in (0, 1):
        with open(directory / f"rootfs.{index}", "wb") as f:
            f.truncate(SLOT_SIZE)
    (directory / "primary").write_text("A\n")
    _script(directory / "boot-backend", BOOT_BACKEND.format(dir=directory))
    conf = directory / "system.conf"
    conf.write_text(SYSTEM_CONF.format(compatible=COMPATIBLE, dir=directory, keyring=keyring))
    socket = socket or directory / "bus.socket"
    (directory / "bus.conf").write_text(bus_config(socket))
    bus = f"unix:path={socket}"
    system = RaucSystem(
        dir=directory,
        keys=keys,
        rauc=directory / "rauc",
        reboot=directory / "reboot",
        bus=bus,
        processes=[],
    )
    try:
        system.processes.append(
            subprocess.Popen(
                ["dbus-daemon", f"--config-file={directory / 'bus.conf'}", "--nofork"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )
        _wait(lambda: socket.exists(), "dbus-daemon did not open its socket")
        _script(
            system.rauc,
            f'#!/bin/sh\nDBUS_SYSTEM_BUS_ADDRESS="{bus}" exec rauc --conf="{conf}" "$@"\n',
        )
        _script(system.reboot, f'#!/bin/sh\necho "$@" >> "{directory}/reboots"\n')
        system.boot("A")
    except BaseException:
        system.stop()
        raise
    return system


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _wait(ready: Callable[[], bool], failure: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(failure)
        time.sleep(0.05)
