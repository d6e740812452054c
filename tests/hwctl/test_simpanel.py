"""`hwctl run --sim` draws through the real SSD1680 driver into a simulated panel, which shows what
it was sent; the invite QR is read back from the SPI bytes of the update."""

from __future__ import annotations

import json

from PIL import Image

from hwctl import epd, screens
from hwctl.display import Display, SimulatorBackend
from tests.hwctl.panel import scan, sent_frame

SPEC = epd.PANELS["2in13_v4"]


def invite(link: str) -> Image.Image:
    content = screens.InviteContent(link, "chat", "192.168.1.20", "2 people onboarded")
    return screens.render_invite(SPEC.landscape, content)


def same_picture(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.convert("1").tobytes() == b.convert("1").tobytes()


async def test_the_simulated_panel_shows_what_the_driver_sent(tmp_path) -> None:
    display = Display(SimulatorBackend(tmp_path, SPEC))
    first = invite("dclogin:a1@192.168.1.20?p=one&v=1")
    assert await display.show(first, "invite") == "full"
    panel = tmp_path / "panel"
    stream = (panel / "last.spi").read_bytes()
    assert scan(sent_frame(stream, SPEC), tmp_path) == ["dclogin:a1@192.168.1.20?p=one&v=1"]
    with Image.open(panel / "current.png") as shown:
        assert same_picture(shown, first)
    with Image.open(tmp_path / "frames" / "current.png") as logged:  # the PNG log as before
        assert same_picture(logged, first)

    second = invite("dclogin:b2@192.168.1.20?p=two&v=1")
    assert await display.show(second, "invite") == "partial"
    stream = (panel / "last.spi").read_bytes()
    assert scan(sent_frame(stream, SPEC), tmp_path) == ["dclogin:b2@192.168.1.20?p=two&v=1"]
    assert bytes([ord("C"), epd.WRITE_RAM_RED]) not in stream  # a partial update keeps its base
    with Image.open(panel / "current.png") as shown:
        assert same_picture(shown, second)
    updates = [json.loads(line) for line in (panel / "updates.jsonl").read_text().splitlines()]
    assert [u["waveform"] for u in updates] == ["full", "partial"]
