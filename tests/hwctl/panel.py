"""Reading what the e-paper panel was sent: the SPI record of hwctl's simulated panel
(hwctl/simpanel.py, DIR/last.spi) decoded to a picture, and QR codes scanned off a picture."""

from __future__ import annotations

import struct
from pathlib import Path

from PIL import Image

from hwctl import epd
from hwctl.simpanel import picture_from_ram
from tests.helpers import zbar_read


def records(stream: bytes) -> list[tuple[str, bytes]]:
    """("cmd", byte) and ("data", bytes) in the order they went over the bus."""
    out: list[tuple[str, bytes]] = []
    i = 0
    while i < len(stream):
        kind = stream[i : i + 1]
        if kind == b"C":
            out.append(("cmd", stream[i + 1 : i + 2]))
            i += 2
        elif kind == b"D":
            (length,) = struct.unpack(">I", stream[i + 1 : i + 5])
            out.append(("data", stream[i + 5 : i + 5 + length]))
            i += 5 + length
        else:
            raise ValueError(f"not an SPI record at byte {i}: {kind!r}")
    return out


def sent_frame(stream: bytes, spec: epd.PanelSpec) -> Image.Image:
    """The picture in the black/white RAM write of one update (the driver writes it whole)."""
    log = records(stream)
    i = log.index(("cmd", bytes([epd.WRITE_RAM_BW])))
    kind, ram = log[i + 1]
    assert kind == "data" and len(ram) == spec.row_bytes * spec.height, "not one whole frame"
    return picture_from_ram(spec, ram)


def scan(picture: Image.Image, workdir: Path) -> list[str]:
    """The QR codes zbarimg reads, scaled up with a white margin, as a phone camera sees the
    panel from a hand's length."""
    big = Image.new("1", (picture.width * 4 + 80, picture.height * 4 + 80), 1)
    big.paste(picture.resize((picture.width * 4, picture.height * 4), Image.NEAREST), (40, 40))
    path = workdir / "scanned.png"
    big.save(path)
    return zbar_read(path)
