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
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
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
