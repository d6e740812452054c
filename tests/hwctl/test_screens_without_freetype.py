"""The e-ink screens on a Pillow built without FreeType, as Buildroot builds it unless FreeType is
selected: every screen still renders, the invite QR still scans, and the text is still drawn."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from PIL import Image

from tests.helpers import require_tool

ROOT = Path(__file__).resolve().parents[2]

# PIL._imagingft is the FreeType binding; a Pillow built with -Cfreetype=disable has none.
WITHOUT_FREETYPE = textwrap.dedent(
    """
    import sys
    sys.modules["PIL._imagingft"] = None
    from PIL import features
    assert not features.check("freetype2")
    from hwctl import __main__ as cli, screens
    assert cli.main(["screenshots", sys.argv[1]]) == 0
    content = screens.InviteContent(
        qr_payload="DCACCOUNT:https://chat.example.org/new",
        name="Café Relais — Küche ✓",
        address="chat.example.org",
        status="3 people onboarded · all well",
    )
    screens.render_invite((250, 122), content).save(sys.argv[1] + "/unicode.png")
    screens.render_message((250, 122), "Relay unreachable…", ["Retrying ✓"]).save(
        sys.argv[1] + "/message.png"
    )
    """
)


def render_without_freetype(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_FREETYPE, str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def black_pixels(path: Path, box: tuple[int, int, int, int]) -> int:
    return Image.open(path).convert("L").crop(box).histogram()[0]


def test_every_screen_renders_without_freetype(tmp_path: Path) -> None:
    result = render_without_freetype(tmp_path)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["info.png", "invite-lan.png", "invite.png", "message.png", "proxy.png",
                     "reset-countdown.png", "unicode.png"]  # fmt: skip
    # The text column right of the QR holds drawn text, not a blank area.
    for name in ("invite.png", "unicode.png"):
        width, height = Image.open(tmp_path / name).size
        assert black_pixels(tmp_path / name, (height + 2, 0, width, height)) > 100, name
    width, height = Image.open(tmp_path / "message.png").size
    assert black_pixels(tmp_path / "message.png", (0, 0, width, 30)) > 50


def test_the_invite_qr_scans_without_freetype(tmp_path: Path) -> None:
    result = render_without_freetype(tmp_path)
    assert result.returncode == 0, result.stderr
    zbarimg = require_tool("zbarimg")
    decoded = subprocess.run(
        [zbarimg, "--raw", "-q", str(tmp_path / "invite.png"), str(tmp_path / "unicode.png")],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    assert decoded == ["DCACCOUNT:https://chat.example.org/new"] * 2
