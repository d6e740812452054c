"""Build and boot the QEMU twin of the appliance for tests and benchmarks."""

from __future__ import annotations

import imaplib
import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from guest_agent import Completed, GuestAgent

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "image" / "build-twin.sh"
RUN_SCRIPT = REPO / "image" / "run-twin.sh"
BUILD_TOOLS = ("mmdebstrap", "genimage", "mksquashfs", "mkfs.f2fs", "mkfs.vfat", "mcopy")
# The twins: a PC, and the Pi's architecture (built through qemu-user, booted on QEMU's virt board).
ARCHES = ("amd64", "arm64")
CROSS_BUILD_TOOLS = ("qemu-aarch64-static", "arch-test")
RUN_TOOLS = {"amd64": ("qemu-system-x86_64",), "arm64": ("qemu-system-aarch64",)}
# Guest port -> what answers there first.
GUEST_PORTS = {25: "smtp", 465: "submissions", 587: "submission", 143: "imap", 993: "imaps",
               80: "http", 443: "https"}  # fmt: skip
DISK_SIZE = 1 << 30  # the card: bigger than the image, so first boot grows /data
GUEST_DOMAIN = "10.0.2.15"  # QEMU user networking always leases this address
BOOT_TIMEOUT = 300  # seconds from QEMU's start to the relay's greeting, on a loaded machine


def missing_tools(tools: tuple[str, ...]) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


def build_tools(arch: str) -> tuple[str, ...]:
    return BUILD_TOOLS + (CROSS_BUILD_TOOLS if arch == "arm64" else ())


def build(out: Path, arch: str = "amd64") -> Path:
    """Run image/build-twin.sh into `out` (amd64 about 2–4 minutes on 2 cores, arm64 longer:
    the packages' scripts and pip run under qemu-user)."""
    env = dict(os.environ, PYTHON=sys.executable, ARCH=arch)
    result = subprocess.run(
        [str(BUILD_SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=1500
    )
    if result.returncode != 0:
        raise RuntimeError(f"build-twin.sh failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return out


def need(condition: bool, reason: str) -> None:
    """Skip on a developer machine; in CI (CI=true) a missing prerequisite is a failure."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: tests/system-packages.txt)")
    pytest.skip(reason)


def qmp(path: Path, command: str, arguments: dict) -> object:
    """One command over QEMU's machine protocol; raises with QEMU's error text."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(path))
        stream = s.makefile("rw")
        json.loads(stream.readline())  # the greeting
        for request in ({"execute": "qmp_capabilities"},
                        {"execute": command, "arguments": arguments}):  # fmt: skip
            stream.write(json.dumps(request) + "\n")
            stream.flush()
            while True:
                answer = json.loads(stream.readline())
                if "event" not in answer:
                    break
            if "error" in answer:
                raise RuntimeError(f"QMP {request['execute']}: {answer['error']['desc']}")
        return answer["return"]


def free_ports(count: int) -> list[int]:
    """Distinct host ports that were free a moment ago: bound all at once, since a port
    bound and closed one at a time can come back from the kernel for the next one."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Twin:
    """One QEMU process running the twin on a private copy of its disk."""

    def __init__(self, build_dir: Path, workdir: Path, *, disk_size: int = DISK_SIZE):
        self.build_dir = build_dir
        self.arch = (build_dir / "arch").read_text().strip()
        self.workdir = workdir
        self.disk = workdir / "card.img"
        shutil.copyfile(build_dir / "disk.img", self.disk)
        os.truncate(self.disk, disk_size)
        self.ports = dict(zip(GUEST_PORTS, free_ports(len(GUEST_PORTS)), strict=True))
        self.agent = GuestAgent(str(workdir / "agent.sock"))
        self.qmp_path = workdir / "qmp.sock"
        self.sticks = 0
        self.process: subprocess.Popen | None = None
        self.boots = 0
        self.started_at = 0.0
        self.boot_seconds = 0.0

    @property
    def serial_log(self) -> Path:
        return self.workdir / f"serial-{self.boots}.log"

    def start(self) -> None:
        assert self.process is None, "already running"
        self.boots += 1
        env = dict(
            os.environ,
            TWIN_PORTS=" ".join(f"{host}:{guest}" for guest, host in self.ports.items()),
            TWIN_DISK=str(self.disk),
            TWIN_SERIAL=str(self.serial_log),
            TWIN_AGENT=self.agent.path,
            TWIN_QMP=str(self.qmp_path),
        )
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [str(RUN_SCRIPT), str(self.build_dir)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / f"qemu-{self.boots}.err", "w"),  # noqa: SIM115
            start_new_session=True,
        )

    def wait_agent(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if Path(self.agent.path).exists() and self.agent.ping():
                return
            time.sleep(1)
        raise TimeoutError(f"guest agent not up after {timeout}s\n{self.console_tail()}")

    def banner(self, guest_port: int, *, request: bytes = b"", timeout: float = 10) -> bytes:
        """The first bytes a service sends (after `request`), or b"" if nothing answers."""
        try:
            with socket.create_connection(("127.0.0.1", self.ports[guest_port]), timeout) as s:
                s.settimeout(timeout)
                if request:
                    s.sendall(request)
                return s.recv(200)
        except OSError:
            return b""

    def answer(
        self, guest_port: int, prefix: bytes, *, request: bytes = b"", timeout: float = 120
    ) -> bytes:
        """Retry until the service's first bytes start with `prefix` (the first request after
        boot is slow under TCG: lazy imports, a loaded CI machine)."""
        deadline = time.monotonic() + timeout
        reply = b""
        while time.monotonic() < deadline:
            reply = self.banner(guest_port, request=request, timeout=30)
            if reply.startswith(prefix):
                break
            time.sleep(2)
        return reply

    def wait_ready(self, timeout: float = 300) -> float:
        """Wait until every service of the relay listens; returns the seconds from QEMU's start
        to the first SMTP greeting (the boot figure)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self.banner(25, timeout=5).startswith(b"220"):
                greeted = time.monotonic() - self.started_at
                self.wait_relay_active(max(deadline - time.monotonic(), 60))
                return greeted
            time.sleep(1)
        raise TimeoutError(f"relay not answering SMTP after {timeout}s\n{self.diagnostics()}")

    def wait_relay_active(self, timeout: float = 120) -> None:
        """Wait for the relay's READY=1, sent once all its listeners are open: SMTP starts
        first, so its greeting can come seconds before IMAP listens on an emulated machine."""
        deadline = time.monotonic() + timeout
        while self.run("systemctl is-active chatmail-relay").stdout.strip() != "active":
            if time.monotonic() > deadline:
                raise TimeoutError(f"relay not active after {timeout}s\n{self.diagnostics()}")
            time.sleep(2)

    def plug_usb_stick(self, image: Path) -> None:
        """Plug a USB stick holding `image` into the running machine (QMP hot-plug)."""
        self.sticks += 1
        name = f"stick{self.sticks}"
        qmp(self.qmp_path, "blockdev-add", {
            "node-name": name, "driver": "raw",
            "file": {"driver": "file", "filename": str(image)},
        })  # fmt: skip
        qmp(self.qmp_path, "device_add", {"driver": "usb-storage", "drive": name, "id": name})

    def run(self, script: str, *, timeout: float = 60) -> Completed:
        return self.agent.run(script, timeout=timeout)

    def check(self, script: str, *, timeout: float = 60) -> str:
        result = self.run(script, timeout=timeout)
        assert result.returncode == 0, f"{script!r} failed: {result.stdout}{result.stderr}"
        return result.stdout

    def kill(self) -> None:
        """Pull the plug: SIGKILL to QEMU, no shutdown inside the guest."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def wait_exit(self, timeout: float = 120) -> int:
        """For a reboot requested inside the guest (QEMU runs with -no-reboot)."""
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            err = (self.workdir / f"qemu-{self.boots}.err").read_text(errors="replace")
            raise RuntimeError(
                f"QEMU exited ({self.process.returncode}): {err}\n{self.console_tail()}"
            )

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.serial_log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no console output)"
        return "console:\n" + "\n".join(text.splitlines()[-lines:])

    def diagnostics(self) -> str:
        """Console tail plus, when the agent answers, the relay's journal."""
        parts = [self.console_tail()]
        if self.agent.ping():
            journal = self.run("journalctl -b -u chatmail-relay -n 40 --no-pager; "
                               "systemctl --failed --no-pager")  # fmt: skip
            parts.append("journal:\n" + journal.stdout)
        return "\n".join(parts)


def insecure_context() -> ssl.SSLContext:
    # LAN mode: the relay's certificate is self-signed for the guest's private address.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def send(twin: Twin, addr: str, password: str, text: str) -> None:
    """An encrypted message to oneself, submitted like a client does (587, STARTTLS)."""
    from tests.federation.mail import encrypted  # not for bench/, which imports this module

    with smtplib.SMTP("127.0.0.1", twin.ports[587], timeout=60) as smtp:
        smtp.starttls(context=insecure_context())
        smtp.login(addr, password)
        assert smtp.sendmail(addr, [addr], encrypted(addr, [addr], text)) == {}


def inbox(twin: Twin, addr: str, password: str) -> list[bytes]:
    with imaplib.IMAP4_SSL(
        "127.0.0.1", twin.ports[993], ssl_context=insecure_context(), timeout=30
    ) as imap:
        imap.login(addr, password)
        imap.select("INBOX")
        _, data = imap.search(None, "ALL")
        bodies = []
        for num in data[0].split():
            _, parts = imap.fetch(num, "(RFC822)")
            bodies.append(parts[0][1])
        return bodies
