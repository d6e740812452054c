"""Figures for the appliance image, measured on the QEMU twin (TCG, 2 vCPUs): the amd64 twin, or
with --arch arm64 the Pi's architecture (Cortex-A72 on QEMU's virt board).

    sudo .venv/bin/python bench/appliance_twin.py [--arch arm64] [--twin-dir DIR] [--idle-minutes 10]

Prints: image sizes; boot-to-relay-ready time (host: QEMU start to the first SMTP greeting through
the forwarded port; guest: kernel start to the relay's READY=1, from systemd); bytes written to
the data partition during the first boot, during a normal boot, and during N idle minutes after
it. Writes are the data partition's "sectors written" counter (field 7 of
/sys/block/vda/vda4/stat, 512-byte sectors), read inside the guest after a `sync`, so nothing
still in the page cache is missed. Without --twin-dir the twin is built first (minutes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "image"))

from twin import ARCHES, Twin, build  # noqa: E402


def mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def sectors_written(twin: Twin) -> int:
    stat = twin.check("sync; cat /sys/block/vda/vda4/stat").split()
    return int(stat[6]) * 512


def relay_ready_seconds(twin: Twin, timeout: float = 60) -> float:
    """When systemd got the relay's READY=1 (it may trail the first greeting by a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        out = twin.check("systemctl show -P ActiveEnterTimestampMonotonic chatmail-relay")
        if int(out.strip()) or time.monotonic() > deadline:
            return int(out.strip()) / 1e6
        time.sleep(1)


def boot(twin: Twin) -> tuple[float, float, int]:
    twin.start()
    twin.wait_agent()
    host_seconds = twin.wait_ready()
    return host_seconds, relay_ready_seconds(twin), sectors_written(twin)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=ARCHES, default="amd64", help="the twin to build")
    parser.add_argument("--twin-dir", type=Path, help="output of image/build-twin.sh")
    parser.add_argument("--idle-minutes", type=float, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="twin-bench-") as tmp:
        work = Path(tmp)
        build_dir = args.twin_dir
        if build_dir is None:
            started = time.monotonic()
            build_dir = build(work / "build", args.arch)
            print(f"build: {time.monotonic() - started:.0f} s")
        disk = build_dir / "disk.img"
        allocated = int(subprocess.check_output(["du", "-B1", str(disk)]).split()[0])
        packed = subprocess.run(["xz", "-T0", "-6", "-c", str(disk)], capture_output=True,
                                check=True).stdout  # fmt: skip
        print(f"image: {mib(disk.stat().st_size)} disk.img ({mib(allocated)} allocated), "
              f"{mib(len(packed))} as .img.xz")  # fmt: skip

        (work / "run").mkdir()
        twin = Twin(build_dir, work / "run")
        try:
            host_s, guest_s, written = boot(twin)
            print(f"first boot: relay ready {host_s:.1f} s after QEMU start "
                  f"({guest_s:.1f} s after kernel start); data partition written: {mib(written)} "
                  "(grow + resize of /data, keys, certificate)")  # fmt: skip
            twin.kill()
            host_s, guest_s, written = boot(twin)
            print(f"normal boot: relay ready {host_s:.1f} s after QEMU start "
                  f"({guest_s:.1f} s after kernel start); data partition written: "
                  f"{written / 1024:.0f} KiB")  # fmt: skip
            time.sleep(args.idle_minutes * 60)
            idle = sectors_written(twin) - written
            print(f"idle {args.idle_minutes:g} min after boot: {idle / 1024:.0f} KiB written "
                  f"(boot + idle: {(written + idle) / 1024:.0f} KiB)")  # fmt: skip
        finally:
            twin.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
