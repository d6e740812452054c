"""A simulated e-paper HAT for `hwctl run --sim`: the SSD1680 driver talks to it as to the real one.

It is a `PanelBus` that plays the controller's side: it follows the command stream (DC low: a
command byte, DC high: its data), keeps the black/white RAM the driver writes and, at each master
activation, shows that RAM on its "glass":

    DIR/current.png   what the panel shows now, decoded from its RAM (landscape, as mounted)
    DIR/last.spi      the SPI bytes of the last update, from the reset that woke the panel to
                      the activation: records b"C" + command byte, b"D" + length (4 bytes,
                      big-endian) + data, so a test can decode the frame the driver sent
    DIR/updates.jsonl one line per update: the waveform ("full" or "partial") and the time

BUSY always reads idle: the simulated panel refreshes at once.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

from PIL import Image

from hwctl import epd

WAVEFORMS = {epd.UPDATE_FULL: "full", epd.UPDATE_PARTIAL: "partial"}


class SimulatedPanel:
    def __init__(self, directory: Path, spec: epd.PanelSpec) -> None:
        self.directory = directory
        self.spec = spec
        self.ram = bytearray(b"\xff" * (spec.row_bytes * spec.height))  # white
        self.dc = 0
        self.command: int | None = None
        self.cursor = 0  # byte offset of the RAM counters (data entry mode 3: X, then Y)
        self.waveform = epd.UPDATE_FULL
        self.stream = bytearray()
        directory.mkdir(parents=True, exist_ok=True)

    def spi_write(self, data: bytes) -> None:
        if self.dc == 0:  # a command: one byte
            self.command = data[0]
            self.stream += b"C" + data[:1]
            if self.command == epd.MASTER_ACTIVATION:
                self._activate()
            return
        self.stream += b"D" + struct.pack(">I", len(data)) + data
        self._data(bytes(data))

    def _data(self, data: bytes) -> None:
        if self.command == epd.WRITE_RAM_BW:
            end = min(self.cursor + len(data), len(self.ram))
            self.ram[self.cursor : end] = data[: end - self.cursor]
            self.cursor = end
        elif self.command == epd.RAM_X_COUNTER:
            self.cursor = self.cursor - self.cursor % self.spec.row_bytes + data[0]
        elif self.command == epd.RAM_Y_COUNTER:
            row = data[0] | (data[1] << 8 if len(data) > 1 else 0)
            self.cursor = row * self.spec.row_bytes + self.cursor % self.spec.row_bytes
        elif self.command == epd.DISPLAY_UPDATE_CONTROL_2:
            self.waveform = data[0]

    def _activate(self) -> None:
        landscape = picture_from_ram(self.spec, bytes(self.ram))
        _replace(self.directory / "current.png", lambda tmp: landscape.save(tmp, format="PNG"))
        _replace(self.directory / "last.spi", lambda tmp: tmp.write_bytes(self.stream))
        record = {"waveform": WAVEFORMS.get(self.waveform, hex(self.waveform)), "time": time.time()}
        with open(self.directory / "updates.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    def gpio_write(self, pin: int, level: int) -> None:
        if pin == epd.PIN_DC:
            self.dc = level
        elif pin == epd.PIN_RST and level == 0:  # a reset starts the next update's record
            self.stream.clear()

    def gpio_read(self, pin: int) -> int:
        return 0

    def delay_ms(self, ms: int) -> None:
        pass

    def close(self) -> None:
        pass


def picture_from_ram(spec: epd.PanelSpec, ram: bytes) -> Image.Image:
    """What the panel shows for this black/white RAM: portrait rows MSB first (1 = white),
    turned back to the landscape the HAT sits in."""
    portrait = Image.frombytes("1", (spec.row_bytes * 8, spec.height), ram)
    portrait = portrait.crop((0, 0, spec.width, spec.height))
    return portrait.rotate(-90, expand=True)


def _replace(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
