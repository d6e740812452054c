"""QR codes for onboarding links: inline SVG for the invite page, text blocks for terminals."""

from __future__ import annotations

import io
from functools import lru_cache

import qrcode
from qrcode.image.svg import SvgPathFillImage


@lru_cache(maxsize=8)  # the domain-mode link never changes; LAN links pass through
def svg(data: str) -> str:
    """An <svg> element (no XML declaration) with a white background and a quiet zone.

    Takes tens of milliseconds (more on a Pi): call it from a worker thread in the server.
    """
    image = qrcode.make(data, image_factory=SvgPathFillImage, border=4)
    return image.to_string(encoding="unicode")


def terminal(data: str) -> str:
    """Half-block characters, light modules drawn, so it scans on a dark terminal."""
    code = qrcode.QRCode(border=2)
    code.add_data(data)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    return out.getvalue()
