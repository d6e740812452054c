"""hwctl with its simulators against a real relay process (`relay serve`), as a person uses it.

The PNG frame is decoded with zbarimg, the decoded dclogin link is used for a real IMAP login
(imaplib over TLS: relay.imap exists), the button is pressed with `python -m hwctl press`.
The relay runs as a subprocess because a factory reset restarts it (systemd does that on the box;
here the test restarts it the same way).
"""

from __future__ import annotations

import imaplib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from relay import config as config_mod
from relay.config import Config
from relay.core.admin import reset
from tests.helpers import client_context, make_config, require_tool

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def admin_call(sock: Path, method: str) -> dict | None:
    """One call on the relay's admin socket; None while the relay is not up."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(sock))
            s.sendall(json.dumps({"id": 1, "method": method}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    return json.loads(data)["result"]


@dataclass
class Box:
    config: Config
    config_path: Path
    sim: Path
    relay: subprocess.Popen
    hwctl: subprocess.Popen | None = None

    @property
    def sock(self) -> Path:
        return self.config.data_dir / "admin.sock"

    def start_relay(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "relay", "serve", "--config", str(self.config_path)]
        self.relay = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
        wait_for(lambda: admin_call(self.sock, "status"), 20, "the relay's admin socket")

    def status(self) -> dict:
        return wait_for(lambda: admin_call(self.sock, "status"), 20, "relay status")

    def frames(self) -> list[dict]:
        log = self.sim / "frames" / "frames.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def leds(self) -> list[str]:
        log = self.sim / "leds.jsonl"
        return [json.loads(line)["pattern"] for line in log.read_text().splitlines()]

    def shown_qr(self) -> str:
        """What a phone camera reads off the panel right now ('' if no QR is shown)."""
        out = subprocess.run(
            ["zbarimg", "--raw", "-q", str(self.sim / "frames" / "current.png")],
            capture_output=True,
            timeout=10,
        )
        return out.stdout.decode().strip()

    def press(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "hwctl", "press", "--sim", str(self.sim), *args]
        subprocess.run(cmd, check=True, cwd=ROOT, timeout=30)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    require_tool("zbarimg")
    config = make_config(tmp_path / "data")
    config_path = tmp_path / "data" / "relay.toml"
    config_path.parent.mkdir(parents=True)
    config_path.write_text(config_mod.to_toml(config), encoding="utf-8")
    config = config_mod.load(config_path)
    b = Box(config=config, config_path=config_path, sim=tmp_path / "sim", relay=None)  # type: ignore[arg-type]
    b.start_relay()
    cmd = [sys.executable, "-m", "hwctl", "run", "--sim", str(b.sim), "--admin-socket", str(b.sock)]
    b.hwctl = subprocess.Popen(cmd, cwd=ROOT)
    wait_for(lambda: b.frames() and b.shown_qr().startswith("dclogin:"), 20, "the first invite")
    yield b
    for proc in (b.hwctl, b.relay):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT if proc is b.hwctl else signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def imap_login(box: Box, dclogin: str) -> imaplib.IMAP4_SSL:
    """Log in exactly as the dclogin link tells a client to."""
    url = urlsplit(dclogin)
    addr = unquote(url.path)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["is"] == "ssl" and query["ih"] == box.config.mail_domain
    imap = imaplib.IMAP4_SSL(
        query["ih"], int(query["ip"]), ssl_context=client_context(box.config), timeout=10
    )
    imap.login(addr, query["p"])
    return imap


def test_invite_qr_onboards_an_account_and_is_replaced_after_first_use(box: Box) -> None:
    first = box.shown_qr()
    assert box.frames()[0]["mode"] == "full"
    imap = imap_login(box, first)
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    assert box.status()["accounts"] == 1

    # The used invite disappears: the panel now shows a different, fresh one.
    second = wait_for(lambda: (qr := box.shown_qr()) != first and qr, 10, "a fresh QR")
    assert second.startswith("dclogin:")
    assert box.frames()[-1]["mode"] == "partial"  # no flashing full refresh for a new invite
    imap_login(box, second).logout()
    assert box.status()["accounts"] == 2
    assert box.leds()[:2] == ["booting", "healthy"]


def test_short_press_shows_the_info_page(box: Box) -> None:
    box.press()
    wait_for(lambda: box.frames()[-1]["screen"] == "info", 10, "the info page")
    assert box.frames()[-1]["mode"] == "full"  # a button press may always refresh fully
    assert box.shown_qr() == ""


def test_long_press_wipes_the_data_and_the_relay_comes_back_empty(box: Box) -> None:
    imap_login(box, box.shown_qr()).logout()
    assert box.status()["accounts"] == 1
    old_cert = box.config.cert_path.read_bytes()
    box.press("--long")
    screens = [f["screen"] for f in box.frames()]
    assert "countdown" in screens, "the countdown must be visible on the panel"
    assert "reset_countdown" in box.leds()
    # The relay restarts in-process: it applies the wipe at start and serves again, empty.
    wait_for(lambda: (admin_call(box.sock, "status") or {}).get("accounts") == 0, 30, "empty relay")
    assert box.relay.poll() is None
    assert not (box.config.data_dir / reset.RESET_FLAG).exists()
    assert box.config.cert_path.read_bytes() != old_cert  # keys and certificates were wiped too
    # hwctl reconnects by itself and shows an invite for the fresh relay.
    qr = wait_for(lambda: box.frames()[-1]["screen"] == "invite" and box.shown_qr(), 30, "invite")
    imap_login(box, qr).logout()
    assert box.status()["accounts"] == 1


def test_releasing_early_cancels_the_reset(box: Box) -> None:
    imap_login(box, box.shown_qr()).logout()
    box.press("--hold", "5")
    wait_for(lambda: box.frames()[-1]["screen"] == "invite", 10, "the invite back")
    assert "countdown" in [f["screen"] for f in box.frames()]
    time.sleep(1)
    assert box.relay.poll() is None
    assert not (box.config.data_dir / reset.RESET_FLAG).exists()
    assert box.status()["accounts"] == 1
    assert box.leds()[-1] == "healthy"


def test_power_cut_during_the_reset_still_ends_clean_at_next_start(box: Box) -> None:
    imap_login(box, box.shown_qr()).logout()
    presser = subprocess.Popen(
        [sys.executable, "-m", "hwctl", "press", "--long", "--sim", str(box.sim)], cwd=ROOT
    )
    flag = box.config.data_dir / reset.RESET_FLAG
    wait_for(flag.exists, 20, "the reset flag")
    box.relay.send_signal(signal.SIGKILL)  # power cut: nothing after the flag ran
    box.relay.wait(timeout=10)
    presser.wait(timeout=20)
    assert flag.exists()
    box.start_relay()
    assert box.status()["accounts"] == 0
    assert not flag.exists()
