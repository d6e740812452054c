"""flash.sh against loop devices: it writes and verifies, stores settings, and refuses what
could destroy the wrong disk."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from twin import need

REPO = Path(__file__).resolve().parents[2]
FLASH = REPO / "flash.sh"
SETUP_SCRIPT = REPO / "overlay" / "usr" / "libexec" / "chatmail" / "chatmail-setup"
MIB = 1 << 20


def run_flash(*args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLASH), *args], input=answer, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    need(os.geteuid() == 0, "loop devices need root")
    missing = [
        t for t in ("losetup", "sfdisk", "mkfs.vfat", "mcopy", "mtype") if not shutil.which(t)
    ]
    need(not missing, f"missing tools: {' '.join(missing)}")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A 24 MiB card image shaped like the real one: MBR, FAT boot partition at 4 MiB, data."""
    path = tmp_path / "chatmail.img"
    with open(path, "wb") as f:
        f.truncate(24 * MIB)
    layout = "label: dos\nstart=8192, size=16384, type=c, bootable\nstart=24576, type=83\n"
    subprocess.run(["sfdisk", "-q", str(path)], input=layout, text=True, check=True)
    boot = tmp_path / "boot.vfat"
    subprocess.run(["mkfs.vfat", "-n", "CHATMAIL", "-C", str(boot), "8192"], check=True,
                   capture_output=True)  # fmt: skip
    with open(path, "r+b") as f:
        f.seek(4 * MIB)
        f.write(boot.read_bytes())
        f.seek(12 * MIB)
        f.write(os.urandom(4 * MIB))  # content the hash must cover
    return path


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Factory for loop devices over sparse files; all are detached at the end."""
    devices: list[str] = []

    def make(size: int = 64 * MIB, *, partscan: bool = False) -> str:
        backing = tmp_path / f"card{len(devices)}.bin"
        with open(backing, "wb") as f:
            f.truncate(size)
        args = ["losetup", "--find", "--show"] + (["--partscan"] if partscan else [])
        dev = subprocess.run(
            [*args, str(backing)], capture_output=True, text=True, check=True
        ).stdout.strip()
        devices.append(dev)
        return dev

    yield make
    for dev in devices:
        subprocess.run(["umount", "-q", dev], capture_output=True)
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def device_bytes(dev: str, count: int) -> bytes:
    with open(dev, "rb") as f:
        return f.read(count)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_setup_module():
    loader = importlib.machinery.SourceFileLoader("chatmail_setup", str(SETUP_SCRIPT))
    spec = importlib.util.spec_from_loader("chatmail_setup", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_writes_verifies_and_preseeds_settings_the_box_can_read(image: Path, loop) -> None:
    dev = loop()
    result = run_flash(
        "--yes", "--hostname", "hausmail", "--wifi-ssid", "Haus 7 WLAN",
        "--wifi-password", "correct horse", "--wifi-country", "de",
        "--domain", "auto", "--registration", "closed", "--privacy-mail", "admin@haus7.example",
        str(image), dev,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"Verified: sha256 {sha256(image)}" in result.stdout
    on_card = device_bytes(dev, image.stat().st_size)
    # Everything but the boot partition (which now holds the settings file) is the image.
    assert on_card[: 4 * MIB] == image.read_bytes()[: 4 * MIB]
    assert on_card[12 * MIB :] == image.read_bytes()[12 * MIB :]
    text = subprocess.run(
        ["mtype", "-i", f"{dev}@@{4 * MIB}", "::chatmail-settings.txt"],
        capture_output=True, text=True, check=True, env=dict(os.environ, MTOOLS_SKIP_CHECK="1"),
    ).stdout  # fmt: skip
    settings, problems = load_setup_module().parse_settings(text)
    assert problems == []
    assert settings == {
        "hostname": "hausmail",
        "wifi_ssid": "Haus 7 WLAN",
        "wifi_psk": "correct horse",
        "wifi_country": "DE",
        "mail_domain": "auto",
        "registration_open": "false",
        "privacy_mail": "admin@haus7.example",
    }


def test_asks_before_writing_and_writes_nothing_without_yes(image: Path, loop) -> None:
    dev = loop()
    refused = run_flash(str(image), dev, answer="no\n")
    assert refused.returncode != 0
    assert "not confirmed" in refused.stderr
    assert device_bytes(dev, 24 * MIB) == bytes(24 * MIB)
    assert "Device: " in refused.stdout and "64M" in refused.stdout  # shows what it would erase
    accepted = run_flash(str(image), dev, answer="yes\n")
    assert accepted.returncode == 0, accepted.stderr
    assert device_bytes(dev, 24 * MIB) == image.read_bytes()


def test_requires_an_explicit_device(image: Path) -> None:
    result = run_flash(str(image))
    assert result.returncode == 2
    assert "DEVICE" in result.stderr


def test_refuses_a_regular_file(image: Path, tmp_path: Path) -> None:
    target = tmp_path / "not-a-card.bin"
    target.write_bytes(bytes(32 * MIB))
    result = run_flash("--yes", str(image), str(target))
    assert result.returncode != 0
    assert "not a block device" in result.stderr
    assert target.read_bytes() == bytes(32 * MIB)


def test_refuses_a_partition(image: Path, loop) -> None:
    dev = loop()
    subprocess.run(["sfdisk", "-q", dev], input="start=2048, type=83\n", text=True, check=True)
    subprocess.run(["partx", "-a", dev], capture_output=True)
    part = f"{dev}p1"
    need(Path(part).exists(), "the kernel did not create partition devices for the loop device")
    result = run_flash("--yes", str(image), part)
    assert result.returncode != 0
    assert "is a partition" in result.stderr


def test_refuses_a_disk_with_a_mounted_file_system(image: Path, loop, tmp_path: Path) -> None:
    dev = loop()
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", dev, str(mnt)], check=True)
    try:
        (mnt / "precious").write_text("keep me")
        result = run_flash("--yes", str(image), dev)
        assert result.returncode != 0
        assert "mounted" in result.stderr and str(mnt) in result.stderr
        assert (mnt / "precious").read_text() == "keep me"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_refuses_the_disk_holding_the_running_system(image: Path) -> None:
    source = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE", "--target", "/"], capture_output=True, text=True
    ).stdout.strip()
    disks = subprocess.run(
        ["lsblk", "-s", "-n", "-r", "-o", "KNAME,TYPE", source], capture_output=True, text=True
    ).stdout.split("\n")
    disk = next((line.split()[0] for line in disks if line.endswith(" disk")), None)
    need(disk is not None, f"/ is not on a block device here ({source})")
    # --dry-run and a "no" answer: even a broken check could not write to this machine's disk.
    result = run_flash("--dry-run", str(image), f"/dev/{disk}", answer="no\n")
    assert result.returncode != 0
    assert "running system" in result.stderr or "mounted" in result.stderr


def test_refuses_a_device_above_the_size_limit_unless_forced(image: Path, loop) -> None:
    dev = loop(64 * MIB)
    result = run_flash("--yes", "--max-size", "32M", str(image), dev)
    assert result.returncode != 0
    assert "more than --max-size" in result.stderr
    assert device_bytes(dev, 24 * MIB) == bytes(24 * MIB)
    forced = run_flash("--yes", "--max-size", "32M", "--force", str(image), dev)
    assert forced.returncode == 0, forced.stderr
    assert device_bytes(dev, 24 * MIB) == image.read_bytes()


def test_refuses_a_device_smaller_than_the_image(image: Path, loop) -> None:
    dev = loop(16 * MIB)
    result = run_flash("--yes", str(image), dev)
    assert result.returncode != 0
    assert "smaller than the image" in result.stderr


def test_verification_catches_a_card_that_does_not_hold_the_image(image: Path, loop) -> None:
    dev = loop()
    assert run_flash("--yes", str(image), dev).returncode == 0
    assert run_flash("--verify-only", str(image), dev).returncode == 0
    with open(dev, "r+b") as f:  # one flipped byte, as a worn-out card would return
        f.seek(13 * MIB)
        byte = f.read(1)
        f.seek(13 * MIB)
        f.write(bytes([byte[0] ^ 0xFF]))
        f.flush()
        os.fsync(f.fileno())
    result = run_flash("--verify-only", str(image), dev)
    assert result.returncode != 0
    assert "verification FAILED" in result.stderr


def test_reads_compressed_images(image: Path, loop) -> None:
    need(shutil.which("xz") is not None, "xz is not installed")
    subprocess.run(["xz", "-k", "-T1", "-0", str(image)], check=True)
    dev = loop()
    result = run_flash("--yes", f"{image}.xz", dev)
    assert result.returncode == 0, result.stderr
    assert device_bytes(dev, 24 * MIB) == image.read_bytes()


@pytest.fixture
def fake_card(tmp_path: Path) -> Iterator[Callable[..., tuple[str, Path]]]:
    """Factory for cards served by fakecardfs: (loop device, backing file holding the real flash).

    The device claims `claimed` bytes; what is written past `real` lands back at the start."""
    need(Path("/dev/fuse").exists(), "no /dev/fuse")
    need(shutil.which("umount") is not None, "umount is not installed")
    pytest.importorskip("pyfuse3")
    started: list[tuple[str, Path, subprocess.Popen[bytes]]] = []

    def make(real: int, claimed: int) -> tuple[str, Path]:
        n = len(started)
        backing, mountpoint = tmp_path / f"flash{n}.bin", tmp_path / f"card{n}"
        mountpoint.mkdir()
        with open(backing, "wb") as f:
            f.truncate(real)
        fs = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("fakecardfs.py")), str(backing),
             str(mountpoint), "--size", str(claimed)],
        )  # fmt: skip
        for _ in range(100):
            if os.path.ismount(mountpoint) or fs.poll() is not None:
                break
            time.sleep(0.1)
        assert os.path.ismount(mountpoint), "fakecardfs did not mount"
        dev = subprocess.run(
            ["losetup", "--find", "--show", str(mountpoint / "card.img")],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        started.append((dev, mountpoint, fs))
        return dev, backing

    yield make
    for dev, mountpoint, fs in started:
        subprocess.run(["losetup", "-d", dev], capture_output=True)
        for _ in range(50):  # the loop device lets go of the file asynchronously
            if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
        fs.wait(timeout=30)


def test_refuses_a_card_that_claims_more_than_it_holds(image: Path, fake_card) -> None:
    # Half of what it claims: writes past 48 MiB wrap to the start, as counterfeit cards do.
    dev, flash = fake_card(real=48 * MIB, claimed=96 * MIB)
    assert Path(f"/sys/class/block/{Path(dev).name}/size").read_text().strip() == str(
        96 * MIB // 512
    )
    result = run_flash("--yes", str(image), dev)
    assert result.returncode != 0
    assert "not as large as it claims" in result.stderr
    assert "came back at MiB 0" in result.stderr
    assert "Writing..." not in result.stdout
    # Nothing of the image reached the card: its partition table and boot partition are absent.
    card, written = flash.read_bytes(), image.read_bytes()
    assert card[:512] != written[:512]
    assert card[4 * MIB : 8 * MIB] != written[4 * MIB : 8 * MIB]


def test_a_card_that_is_as_large_as_it_claims_is_written(image: Path, fake_card) -> None:
    dev, flash = fake_card(real=48 * MIB, claimed=48 * MIB)  # the same file system, honest
    result = run_flash("--yes", str(image), dev)
    assert result.returncode == 0, result.stderr
    assert "The whole card holds what was written to it." in result.stdout
    assert flash.read_bytes()[: 24 * MIB] == image.read_bytes()


def test_a_card_that_loses_its_last_mib_is_refused(image: Path, fake_card) -> None:
    # Only slightly smaller than claimed: the last MiB wraps onto the start.
    dev, _ = fake_card(real=63 * MIB, claimed=64 * MIB)
    result = run_flash("--yes", str(image), dev)
    assert result.returncode != 0
    assert "came back at MiB 0" in result.stderr
