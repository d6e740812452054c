"""Run cmlxc's relay_minitest against our relay; meant to run inside a fresh network namespace.

The suite connects to its relays on the standard ports (993, 465, 443, ...) with no way to change
them, so this runs in its own network namespace (`unshare --net`): there the ports are free, and
nothing it starts can reach or disturb the machine's real network. It brings up loopback, starts
one relay per address in LAN mode, runs the suite with a JUnit report, and stops the relays.

    unshare --net -- python -m tests.conformance.minitest_runner --out DIR [--relay2] [-- ARGS]
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

from relay.config import Config, Listen
from tests.helpers import RelayProcess, start_relay_process, stop_relay_process

RELAY1, RELAY2 = "127.0.0.1", "127.0.0.2"
STANDARD_PORTS = {
    "smtp": 25,
    "submissions": 465,
    "submission": 587,
    "imaps": 993,
    "imap": 143,
    "https": 443,
    "http": 80,
}
PER_TEST_TIMEOUT = 180

# The suite's RelayAdmin runs `ssh root@HOST CMD` (nft rules, journalctl) on a relay's host. Here
# every relay is a process in this namespace, so `ssh` runs CMD locally: a firewall rule is narrowed
# to HOST's address, and `journalctl` reads that relay's log file. A cursor is a line number.
SSH_SHIM = """#!/bin/sh
host=${1#*@}
shift
export RELAY_LOG="$RELAY_LOG_DIR/relay-$host.log"
if [ "$*" = "nft -f -" ]; then
    sed "s/ tcp dport / ip daddr $host tcp dport /" | nft -f -
else
    sh -c "$*"
fi
"""
JOURNALCTL_SHIM = """#!/bin/sh
after=0 pattern=. show_cursor=
while [ $# -gt 0 ]; do
    case "$1" in
        --show-cursor) show_cursor=1 ;;
        --after-cursor) after=$2; shift ;;
        -g) pattern=$2; shift ;;
    esac
    shift
done
if [ -n "$show_cursor" ]; then
    echo "-- cursor: $(wc -l < "$RELAY_LOG")"
else
    tail -n +"$((after + 1))" "$RELAY_LOG" | grep -E -- "$pattern"
fi
"""


def loopback_up() -> None:
    """`ip link set lo up` without needing iproute2: a new namespace starts with lo down."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket() as s:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, siocgifflags, request))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sh", b"lo", flags | iff_up))


def minitest_dir() -> Path:
    spec = importlib.util.find_spec("relay_minitest")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("relay_minitest is not installed (pip install cmlxc)")
    return Path(next(iter(spec.submodule_search_locations)))


def relay_config(host: str, out: Path) -> Config:
    return Config(
        mail_domain=host,
        data_dir=out / f"relay-{host}",
        listen=Listen(address=[host], **STANDARD_PORTS),
    )


def start_relay(host: str, out: Path) -> RelayProcess:
    with (out / f"relay-{host}.log").open("ab") as log:
        return start_relay_process(
            relay_config(host, out),
            out / f"relay-{host}.toml",
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def admin_shims(out: Path) -> Path:
    shims = out / "bin"
    shims.mkdir(exist_ok=True)
    for name, text in (("ssh", SSH_SHIM), ("journalctl", JOURNALCTL_SHIM)):
        (shims / name).write_text(text, encoding="utf-8")
        (shims / name).chmod(0o755)
    return shims


def run_suite(out: Path, relay2: bool, extra: list[str]) -> int:
    suite = minitest_dir()
    ini = out / "pytest.ini"
    ini.write_text("[pytest]\n", encoding="utf-8")  # keep our own pytest config out of it
    args = [sys.executable, "-m", "pytest", str(suite), "-c", str(ini), "--rootdir", str(out)]
    args += ["-p", "no:cacheprovider", "-v", "-rA", f"--timeout={PER_TEST_TIMEOUT}"]
    args += ["--junitxml", str(out / "junit.xml"), "--relay1", RELAY1]
    if relay2:
        args += ["--relay2", RELAY2]
    env = {
        **os.environ,
        "PYTHONPATH": str(suite),  # its conftest imports `support` as a top-level module
        "PATH": os.pathsep.join(
            [str(admin_shims(out)), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
        ),
        "RELAY_LOG_DIR": str(out),
    }
    with (out / "minitest.log").open("wb") as log:
        return subprocess.run(
            args + extra, env=env, stdout=log, stderr=subprocess.STDOUT
        ).returncode


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--relay2", action="store_true", help="also start a relay on 127.0.0.2")
    parser.add_argument("extra", nargs="*", help="more pytest arguments (e.g. --deselect)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    loopback_up()
    relays: list[RelayProcess] = []
    try:
        for host in (RELAY1, RELAY2) if args.relay2 else (RELAY1,):
            relays.append(start_relay(host, args.out))
        return run_suite(args.out, args.relay2, args.extra)
    finally:
        for relay in relays:
            stop_relay_process(relay)


if __name__ == "__main__":
    sys.exit(main())
