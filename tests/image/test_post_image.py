"""image/post-image.sh with stand-in Buildroot outputs: the Pi SD card layout genimage makes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from twin import need

REPO = Path(__file__).resolve().parents[2]
POST_IMAGE = REPO / "image" / "post-image.sh"
SECTORS_PER_4MIB = 8192


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [t for t in ("genimage", "mksquashfs", "mkfs.f2fs", "mkfs.vfat", "mcopy", "xz")
               if shutil.which(t) is None]  # fmt: skip
    need(not missing, f"missing tools: {' '.join(missing)}")
    base = tmp_path_factory.mktemp("post-image")
    bin_dir = base / "images"
    firmware = bin_dir / "rpi-firmware"
    (firmware / "overlays").mkdir(parents=True)
    for name in ("start4.elf", "fixup4.dat"):
        (firmware / name).write_bytes(os.urandom(4096))
    shutil.copy(REPO / "buildroot-config/board/rpi/config.txt", firmware / "config.txt")
    shutil.copy(REPO / "buildroot-config/board/rpi/cmdline.txt", firmware / "cmdline.txt")
    (firmware / "overlays" / "spi0-1cs.dtbo").write_bytes(b"\xd0\x0d\xfe\xed")
    (bin_dir / "bcm2711-rpi-4-b.dtb").write_bytes(b"\xd0\x0d\xfe\xed" + bytes(60))
    (bin_dir / "Image").write_bytes(os.urandom(1 << 20))
    rootfs = base / "rootfs"
    (rootfs / "usr/bin").mkdir(parents=True)
    (rootfs / "usr/bin/relay").write_text("#!/bin/sh\n")
    subprocess.run(["mksquashfs", str(rootfs), str(bin_dir / "rootfs.squashfs"), "-quiet",
                    "-noappend", "-comp", "zstd"], check=True)  # fmt: skip
    config = base / ".config"
    config.write_text('BR2_DEFCONFIG="/src/buildroot-config/configs/chatmail_rpi4_64_defconfig"\n')
    env = dict(os.environ, BR2_CONFIG=str(config), GENIMAGE="genimage")
    result = subprocess.run([str(POST_IMAGE), str(bin_dir), "rpi"], env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return bin_dir


def partition_table(image: Path) -> dict:
    dump = subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    table = json.loads(dump)["partitiontable"]
    assert table["label"] == "dos"
    return table


def partitions(image: Path) -> list[dict]:
    return partition_table(image)["partitions"]


def test_boot_two_root_slots_and_data_on_4_mib_boundaries(binaries: Path) -> None:
    table = partition_table(binaries / "sdcard.img")
    parts = table["partitions"]
    assert [p["type"] for p in parts] == ["c", "83", "83", "83"]
    assert parts[0].get("bootable") is True
    assert parts[1]["size"] == parts[2]["size"]  # any update fits either slot
    # The fixed disk signature gives the PARTUUIDs (43484154-02, -03) that
    # /etc/rauc/system.conf names.
    assert table["id"] == "0x43484154"
    for p in parts:
        assert p["start"] % SECTORS_PER_4MIB == 0
        assert p["size"] % SECTORS_PER_4MIB == 0


def boot_files(binaries: Path, folder: str) -> set[str]:
    start = partitions(binaries / "sdcard.img")[0]["start"] * 512
    listing = subprocess.run(
        ["mdir", "-b", "-i", f"{binaries / 'sdcard.img'}@@{start}", f"::/{folder}"],
        capture_output=True, text=True, check=True,
        env=dict(os.environ, MTOOLS_SKIP_CHECK="1"),
    ).stdout  # fmt: skip
    return {Path(line.strip()).name for line in listing.splitlines()}


def boot_text(binaries: Path, path: str) -> str:
    start = partitions(binaries / "sdcard.img")[0]["start"] * 512
    return subprocess.run(
        ["mtype", "-i", f"{binaries / 'sdcard.img'}@@{start}", f"::/{path}"],
        capture_output=True, text=True, check=True,
        env=dict(os.environ, MTOOLS_SKIP_CHECK="1"),
    ).stdout  # fmt: skip


def test_boot_partition_holds_firmware_and_each_slots_kernel_and_device_tree(
    binaries: Path,
) -> None:
    assert {"start4.elf", "fixup4.dat", "config.txt", "chatmail-slot.txt", "slot-a",
            "slot-b"} <= boot_files(binaries, "")  # fmt: skip
    assert {"cmdline.txt", "Image", "bcm2711-rpi-4-b.dtb", "overlays"} <= boot_files(
        binaries, "slot-a"
    )
    # The firmware starts slot A until an update commits B (boot-slot's files, config.txt).
    assert boot_text(binaries, "chatmail-slot.txt").strip() == "os_prefix=slot-a/"
    config = boot_text(binaries, "config.txt")
    assert "include chatmail-slot.txt" in config
    assert config.index("[tryboot]") < config.index("include chatmail-tryboot.txt")
    for slot, partuuid in (("a", "43484154-02"), ("b", "43484154-03")):
        cmdline = boot_text(binaries, f"slot-{slot}/cmdline.txt").split()
        assert f"root=PARTUUID={partuuid}" in cmdline and f"rauc.slot={slot.upper()}" in cmdline


def test_slot_a_is_the_squashfs_and_data_an_empty_labelled_f2fs(binaries: Path) -> None:
    image = binaries / "sdcard.img"
    parts = partitions(image)
    root_offset = parts[1]["start"] * 512
    with open(image, "rb") as f:
        f.seek(root_offset)
        assert f.read(4) == b"hsqs"
    probe = subprocess.run(
        ["blkid", "-p", "-O", str(parts[3]["start"] * 512), "-o", "export", str(image)],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "TYPE=f2fs" in probe and "LABEL=chatmail-data" in probe


def test_compressed_image_for_flash_sh_with_its_checksum(binaries: Path) -> None:
    packed = binaries / "chatmail_rpi4_64.img.xz"
    assert packed.exists()
    check = subprocess.run(["sha256sum", "-c", packed.name + ".sha256"], cwd=binaries,
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    unpacked = subprocess.run(["xz", "-dc", str(packed)], capture_output=True, check=True).stdout
    assert unpacked == (binaries / "sdcard.img").read_bytes()
