"""The hwctl command line as the appliance's unit and a person at a terminal use it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hwctl import __main__ as cli
from tests.helpers import require_tool

ROOT = Path(__file__).resolve().parents[2]


def test_the_units_invocation_finds_the_admin_socket_through_the_relay_config(tmp_path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('mail_domain = "10.0.0.2"\ndata_dir = "relay-data"\n')
    args = cli._parser().parse_args(["run", "--config", str(config)])
    cli.apply_relay_config(args)
    assert args.data_dir == tmp_path / "relay-data"
    assert args.admin_socket == tmp_path / "relay-data" / "admin.sock"


def test_press_without_a_running_simulator_says_so(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hwctl", "press", "--sim", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 1
    assert "no simulator listening" in result.stderr


def test_screenshots_render_decodable_invites(tmp_path) -> None:
    assert cli.main(["screenshots", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["info.png", "invite-lan.png", "invite.png", "proxy.png", "reset-countdown.png"]
    zbarimg = require_tool("zbarimg")
    decoded = subprocess.run(
        [
            zbarimg,
            "--raw",
            "-q",
            *(str(tmp_path / f) for f in ("invite.png", "invite-lan.png", "proxy.png")),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    assert decoded[0] == "DCACCOUNT:https://chat.example.org/new"
    assert decoded[1].startswith("dclogin:k3x9q2m7a@[192.168.1.20]?")
    assert decoded[2].startswith("ss://") and decoded[2].endswith(
        "@chat.example.org:443#chat.example.org"
    )
