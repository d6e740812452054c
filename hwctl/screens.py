"""What the e-ink panel shows, rendered as 1-bit Pillow images (landscape, white background).

Pure functions: the same inputs give the same pixels, so screenshots and tests are reproducible.
QR modules are drawn at an integer number of pixels each; resampling a QR code on a 1-bit panel
would blur module edges and make it harder to scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import qrcode
import qrcode.constants
from PIL import Image, ImageDraw, ImageFont, features

WHITE = 1
BLACK = 0
# The spec asks for 4 modules of quiet zone; 2 still decodes (measured), used only when 4 won't fit.
QUIET_PREFERRED = 4
QUIET_MINIMUM = 2
TEXT_MIN_WIDTH = 110  # px beside the QR for name, address and status


@dataclass(frozen=True)
class InviteContent:
    qr_payload: str  # DCACCOUNT:... or dclogin:...
    name: str  # what the relay is called (host name)
    address: str  # the domain or IP people see
    status: str  # one short line: people onboarded, health


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
ELLIPSIS = "…"


def has_freetype() -> bool:
    """Whether this Pillow was built with FreeType (Buildroot builds it without unless selected)."""
    return bool(features.check("freetype2"))


def _font(size: int) -> Font:
    """Pillow's scalable default font; without FreeType its fixed bitmap font (one size, Latin-1)."""
    return _load_font(size if has_freetype() else None)


@lru_cache(maxsize=64)
def _load_font(size: int | None) -> Font:
    if size is None:  # without FreeType, load_default() is the bitmap font (any Pillow >= 10.1)
        return ImageFont.load_default()
    return ImageFont.load_default(size=size)


def _shown(text: str, font: Font) -> str:
    """The text as the font can draw it: the bitmap font knows Latin-1 only."""
    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    text = text.replace(ELLIPSIS, "...")
    return text.encode("latin-1", "replace").decode("latin-1")


def _height(font: Font) -> int:
    if isinstance(font, ImageFont.FreeTypeFont):
        return int(font.size)
    return int(font.getbbox("Hg")[3])


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font: Font,
          fill: int) -> None:  # fmt: skip
    draw.text(xy, _shown(text, font), font=font, fill=fill)


def _length(draw: ImageDraw.ImageDraw, text: str, font: Font) -> float:
    return draw.textlength(_shown(text, font), font=font)


def qr_matrix(payload: str) -> list[list[bool]]:
    """The smallest QR for the payload; ECC M, or L when M would need a bigger symbol."""
    best: list[list[bool]] | None = None
    for ecc in (qrcode.constants.ERROR_CORRECT_M, qrcode.constants.ERROR_CORRECT_L):
        qr = qrcode.QRCode(error_correction=ecc, border=0)
        qr.add_data(payload)
        qr.make(fit=True)
        matrix = qr.get_matrix()
        if best is None or len(matrix) < len(best):
            best = matrix
    assert best is not None
    return best


def draw_qr(image: Image.Image, payload: str, box: int, origin: tuple[int, int] = (0, 0)) -> int:
    """Draw the QR centred in a `box` x `box` square; returns the square's used side in pixels."""
    matrix = qr_matrix(payload)
    n = len(matrix)
    for quiet in (QUIET_PREFERRED, QUIET_MINIMUM):
        scale = box // (n + 2 * quiet)
        if scale >= 2 or quiet == QUIET_MINIMUM:
            break
    if scale < 1:
        raise ValueError(f"QR with {n} modules does not fit in {box} px")
    side = n * scale
    ox = origin[0] + (box - side) // 2
    oy = origin[1] + (box - side) // 2
    draw = ImageDraw.Draw(image)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                x0, y0 = ox + x * scale, oy + y * scale
                draw.rectangle((x0, y0, x0 + scale - 1, y0 + scale - 1), fill=BLACK)
    return side


def _fit_text(
    draw: ImageDraw.ImageDraw, text: str, width: int, size: int, min_size: int = 9
) -> tuple[str, Font]:
    """The largest font (down to min_size) that fits; the text is cut with an ellipsis if none does."""
    for s in range(size, min_size - 1, -1):
        font = _font(s)
        if _length(draw, text, font) <= width:
            return text, font
    font = _font(min_size)
    while text and _length(draw, text + ELLIPSIS, font) > width:
        text = text[:-1]
    return text + ELLIPSIS, font


def _text_column(image: Image.Image, x: int, lines: list[tuple[str, int]], top: int = 4) -> None:
    draw = ImageDraw.Draw(image)
    width = image.width - x - 3
    y = top
    for text, size in lines:
        if not text:
            y += size // 2
            continue
        shown, font = _fit_text(draw, text, width, size)
        _text(draw, (x, y), shown, font, BLACK)
        y += _height(font) + 4


def render_invite(size: tuple[int, int], content: InviteContent) -> Image.Image:
    """QR on the left (as tall as the panel), name, address and status on the right."""
    image = Image.new("1", size, WHITE)
    w, h = size
    box = min(h, w - TEXT_MIN_WIDTH)  # on wide panels the QR must leave room for the text
    draw_qr(image, content.qr_payload, box, origin=(0, (h - box) // 2))
    x = box + 2
    lines = [
        (content.name, 16),
        (content.address, 13),
        ("", 10),
        ("Scan with Delta Chat", 11),
        ("to get an account", 11),
    ]
    _text_column(image, x, lines)
    draw = ImageDraw.Draw(image)
    draw.line((x, h - 20, w - 3, h - 20), fill=BLACK)
    status, font = _fit_text(draw, content.status, w - x - 3, 11)
    _text(draw, (x, h - 16), status, font, BLACK)
    return image


def render_proxy(size: tuple[int, int], payload: str, address: str) -> Image.Image:
    """The relay's ss:// link (a second short press, when Shadowsocks is on): QR on the left,
    where to scan it in Delta Chat on the right."""
    image = Image.new("1", size, WHITE)
    w, h = size
    box = min(h, w - TEXT_MIN_WIDTH)
    draw_qr(image, payload, box, origin=(0, (h - box) // 2))
    lines = [
        ("Mail ports blocked?", 13),
        (address, 11),
        ("", 10),
        ("In Delta Chat:", 11),
        ("Settings > Advanced", 11),
        ("> Proxy, scan this", 11),
    ]
    _text_column(image, box + 2, lines)
    return image


def render_info(size: tuple[int, int], rows: list[tuple[str, str]], title: str) -> Image.Image:
    """The page a short button press shows: a title and label/value rows."""
    image = Image.new("1", size, WHITE)
    draw = ImageDraw.Draw(image)
    w, h = size
    title_font = _font(16)
    draw.rectangle((0, 0, w - 1, 22), fill=BLACK)
    _text(draw, (4, 2), title, title_font, WHITE)
    label_w = 66
    y = 28
    row_h = max(12, (h - y) // max(1, len(rows)))
    for label, value in rows:
        font_size = min(13, row_h - 2)
        _text(draw, (4, y), label, _font(font_size), BLACK)
        shown, font = _fit_text(draw, value, w - label_w - 6, font_size, min_size=8)
        _text(draw, (label_w, y), shown, font, BLACK)
        y += row_h
    return image


def render_countdown(size: tuple[int, int], remaining: int) -> Image.Image:
    """Factory-reset countdown: the seconds left in large type and how to cancel."""
    image = Image.new("1", size, WHITE)
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.rectangle((0, 0, w - 1, h - 1), outline=BLACK, width=3)
    _text(draw, (10, 8), "Factory reset in", _font(16), BLACK)
    big = _font(min(64, h // 2))
    number = str(remaining)
    nw = _length(draw, number, big)
    _text(draw, ((w - nw) / 2, h * 0.28), number, big, BLACK)
    hint = "Release the button to cancel"
    shown, font = _fit_text(draw, hint, w - 20, 13)
    _text(draw, (10, h - 22), shown, font, BLACK)
    return image


def render_message(size: tuple[int, int], title: str, lines: list[str]) -> Image.Image:
    """A plain notice (resetting, relay unreachable, USB progress)."""
    image = Image.new("1", size, WHITE)
    draw = ImageDraw.Draw(image)
    _text(draw, (6, 6), title, _font(18), BLACK)
    _text_column(image, 6, [(line, 12) for line in lines], top=34)
    return image


UPDATE_TITLES = {
    "downloading": "Downloading update",
    "installing": "Installing update",
    "installed": "Update installed",
    "failed": "Update failed",
    "rolled-back": "Update rolled back",
}


def render_update(size: tuple[int, int], update: dict) -> Image.Image:
    """An update from the relay's admin status: what happens, a progress bar while it runs,
    then the outcome (rebooting into the new version, why it failed, or that it was rolled
    back)."""
    state = str(update.get("state", ""))
    version = str(update.get("version") or "")
    image = Image.new("1", size, WHITE)
    draw = ImageDraw.Draw(image)
    w, h = size
    _text(draw, (6, 6), UPDATE_TITLES.get(state, "Update"), _font(18), BLACK)
    lines = [(f"Version {version}" if version else "", 12)]
    if state in ("downloading", "installing"):
        percent = max(0, min(100, int(update.get("progress") or 0)))
        top, bottom = h // 2, h // 2 + 14
        draw.rectangle((6, top, w - 7, bottom), outline=BLACK, width=2)
        draw.rectangle((8, top + 2, 8 + (w - 17) * percent // 100, bottom - 2), fill=BLACK)
        _text(draw, (6, bottom + 4), f"{percent}%  Do not unplug the power.", _font(11), BLACK)
    elif state == "installed":
        lines += [("Restarting into it...", 12), ("Mail is back in a few minutes.", 12)]
    elif state == "rolled-back":
        lines += [("It did not start well, so the box", 12), ("went back to the version before.", 12),
                  ("Nothing was lost.", 12)]  # fmt: skip
    else:
        lines += [("The box keeps running as before.", 12), (str(update.get("message", "")), 11)]
    _text_column(image, 6, lines, top=34)
    return image
