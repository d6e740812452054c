"""Updates on the QEMU twin (docs/updates.md): a signed RAUC bundle on a USB stick goes into the
root slot that is not running, the twin's firmware (image/run-twin.sh) tries it once, and the new
system commits itself only when its relay is healthy; otherwise the box is back on the old slot.

One twin for the module, the tests in order: a refused bundle, an update, a broken update that
rolls back, a power cut in the middle of an install. Mail and accounts stay throughout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from twin import BOOT_TIMEOUT, REPO, Twin, inbox, need, send

pytestmark = [pytest.mark.qemu, pytest.mark.timeout(1800)]
MAKE_BUNDLE = REPO / "image" / "make-bundle.sh"


@pytest.fixture(scope="module")
def build(twin_builds: Callable[[str], Path]) -> Path:
    need(all(shutil.which(t) for t in ("rauc", "unsquashfs", "mkfs.vfat", "mcopy")),
         "rauc, unsquashfs, mkfs.vfat and mcopy make the bundles and the stick")  # fmt: skip
    return twin_builds("amd64")


@pytest.fixture(scope="module")
def twin(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    machine = Twin(build, tmp_path_factory.mktemp("twin-update"))
    machine.start()
    try:
        boot(machine)
        yield machine
    finally:
        machine.kill()


def boot(twin: Twin) -> None:
    twin.wait_agent()
    twin.wait_ready(BOOT_TIMEOUT)


def reboot_by_itself(twin: Twin, timeout: float = 600) -> None:
    """The guest rebooted (QEMU exits with -no-reboot): the firmware starts the next boot."""
    twin.wait_exit(timeout=timeout)
    twin.start()
    boot(twin)


def root_image(build: Path, workdir: Path, version: str, *, broken: bool = False) -> Path:
    """The twin's root with another IMAGE_VERSION; `broken`: a relay that cannot start."""
    tree = workdir / f"root-{version}"
    subprocess.run(["unsquashfs", "-q", "-d", str(tree), str(build / "root.squashfs")],
                   check=True, capture_output=True)  # fmt: skip
    release = tree / "usr/lib/os-release"
    lines = [ln for ln in release.read_text().splitlines() if not ln.startswith("IMAGE_VERSION=")]
    release.write_text("\n".join([*lines, f"IMAGE_VERSION={version}"]) + "\n")
    if broken:
        relay = tree / "usr/local/bin/relay"
        relay.write_text("#!/bin/sh\necho 'this relay cannot start' >&2\nexit 1\n")
    image = workdir / f"root-{version}.squashfs"
    subprocess.run(["mksquashfs", str(tree), str(image), "-comp", "zstd", "-noappend", "-quiet"],
                   check=True, capture_output=True)  # fmt: skip
    shutil.rmtree(tree)
    return image


def bundle(build: Path, workdir: Path, version: str, *, keys: Path | None = None,
           broken: bool = False) -> Path:  # fmt: skip
    keys = keys or build / "dev-keys"
    out = workdir / f"update-{version}.raucb"
    env = dict(os.environ, RAUC_CERT=str(keys / "dev-signing.cert.pem"),
               RAUC_KEY=str(keys / "dev-signing.key.pem"))  # fmt: skip
    made = subprocess.run(
        [str(MAKE_BUNDLE), str(out), str(root_image(build, workdir, version, broken=broken)),
         version],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    return out


def stick(workdir: Path, bundle_file: Path) -> Path:
    """A USB stick labelled RELAYUPDATE with the bundle on it."""
    image = workdir / f"stick-{bundle_file.stem}.img"
    size_kib = bundle_file.stat().st_size // 1024 + 16384
    subprocess.run(["mkfs.vfat", "-n", "RELAYUPDATE", "-C", str(image), str(size_kib)],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(["mcopy", "-i", str(image), str(bundle_file), "::"], check=True,
                   env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))  # fmt: skip
    return image


def version(twin: Twin) -> str:
    return twin.check(". /usr/lib/os-release; echo $IMAGE_VERSION").strip()


def running_slot(twin: Twin) -> str:
    return twin.check("/usr/libexec/chatmail/boot-slot committed").strip()


def root_device(twin: Twin) -> str:
    return twin.check("findmnt -n -o SOURCE /").strip()


def update_state(twin: Twin) -> str:
    return twin.check("relay update status --config /data/relay/relay.toml").strip()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, twin: Twin) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s\n{twin.diagnostics()}"
        time.sleep(3)


def test_a_bundle_signed_with_another_key_is_refused(
    twin: Twin, build: Path, tmp_path: Path, account: tuple[str, str]
) -> None:
    addr, password = account
    send(twin, addr, password, "before any update")
    other_keys = tmp_path / "other-keys"
    subprocess.run([str(MAKE_BUNDLE), "--dev-keyring", str(other_keys)], check=True,
                   capture_output=True)  # fmt: skip
    foreign = bundle(build, tmp_path, "0.9.0", keys=other_keys)
    twin.plug_usb_stick(stick(tmp_path, foreign))
    wait_for(lambda: "failed" in update_state(twin), 300, "the refusal", twin)
    assert "signature" in update_state(twin).lower()
    assert (root_device(twin), running_slot(twin)) == ("/dev/vda2", "A")
    # Nothing was written to slot B, and no boot into it is pending.
    assert twin.check("head -c 4 /dev/vda3 | od -An -c").split() != list("hsqs")
    assert twin.check("/usr/libexec/chatmail/boot-slot get-primary").strip() == "A"


def test_an_update_from_a_usb_stick_runs_after_one_reboot_with_mail_intact(
    twin: Twin, build: Path, tmp_path: Path, account: tuple[str, str]
) -> None:
    addr, password = account
    twin.plug_usb_stick(stick(tmp_path, bundle(build, tmp_path, "0.2.0")))
    reboot_by_itself(twin)  # installed into slot B, then the relay asked for the reboot
    assert (root_device(twin), version(twin)) == ("/dev/vda3", "0.2.0")
    assert update_state(twin).startswith("updated 0.2.0")
    # The new slot commits itself once its relay is healthy; from then on every boot is B.
    wait_for(lambda: running_slot(twin) == "B", 360, "the commit of slot B", twin)
    assert [b"multipart/encrypted" in m for m in inbox(twin, addr, password)] == [True]
    twin.kill()
    twin.start()
    boot(twin)
    assert (root_device(twin), version(twin)) == ("/dev/vda3", "0.2.0")


def test_an_update_whose_relay_cannot_start_rolls_back_by_itself(
    twin: Twin, build: Path, tmp_path: Path, account: tuple[str, str]
) -> None:
    addr, password = account
    send(twin, addr, password, "before the broken update")
    twin.plug_usb_stick(stick(tmp_path, bundle(build, tmp_path, "0.3.0", broken=True)))
    twin.wait_exit(timeout=600)  # installed into slot A; the reboot tries it once
    twin.start()
    # Slot A's relay dies at every start: its start limit (or chatmail-update-check) reboots,
    # and the firmware starts the committed slot B again, untouched.
    reboot_by_itself(twin, timeout=900)
    assert (root_device(twin), version(twin), running_slot(twin)) == ("/dev/vda3", "0.2.0", "B")
    assert len(inbox(twin, addr, password)) == 2
    told = update_state(twin)  # the relay on the old slot says what became of 0.3.0
    assert told.startswith("rolled-back 0.3.0") and "back on 0.2.0" in told, told


def test_a_try_file_left_from_an_earlier_boot_is_over(twin: Twin) -> None:
    """What the Pi firmware leaves after a failed try (it applies [tryboot] once, but keeps the
    file): boot-slot takes the committed slot for the next boot's again; a try written in this
    boot stays."""
    committed = running_slot(twin)
    other = "A" if committed == "B" else "B"
    boot_slot = "/usr/libexec/chatmail/boot-slot"
    mount = twin.check("/usr/libexec/chatmail/bootpart mount").strip()
    twin.check(
        f"printf '# boot 0-an-earlier-boot\\nos_prefix=slot-{other.lower()}/\\n'"
        f" > {mount}/chatmail-tryboot.txt && /usr/libexec/chatmail/bootpart umount"
    )
    assert twin.check(f"{boot_slot} get-primary").strip() == committed
    twin.check(f"{boot_slot} set-primary {other}")
    assert twin.check(f"{boot_slot} get-primary").strip() == other
    twin.check(f"{boot_slot} set-primary {committed}")
    assert twin.check(f"{boot_slot} get-primary").strip() == committed


def test_a_power_cut_during_an_install_leaves_the_old_slot_booting(
    twin: Twin, build: Path, tmp_path: Path, account: tuple[str, str]
) -> None:
    addr, password = account
    twin.plug_usb_stick(stick(tmp_path, bundle(build, tmp_path, "0.4.0")))
    wait_for(lambda: "installing" in update_state(twin), 300, "the install", twin)
    time.sleep(2)  # in the middle of writing slot A
    twin.kill()
    twin.start()
    boot(twin)
    assert (root_device(twin), version(twin), running_slot(twin)) == ("/dev/vda3", "0.2.0", "B")
    assert len(inbox(twin, addr, password)) == 2
