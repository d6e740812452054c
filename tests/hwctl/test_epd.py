"""The panel driver's SPI/GPIO traffic for one full refresh, checked against the SSD1680 datasheet."""

from __future__ import annotations

import pytest
from PIL import Image

from hwctl import epd
from hwctl.display import PanelBackend
from hwctl.simpanel import picture_from_ram
from tests.hwctl.panel import scan


class RecordingBus:
    """A fake HAT: records commands (DC low), data (DC high), pin writes and busy waits."""

    def __init__(self, busy_polls: int = 3) -> None:
        self.log: list[tuple] = []
        self.levels = {epd.PIN_DC: 0}
        self.busy_polls = busy_polls
        self.busy_left = 0

    def spi_write(self, data: bytes) -> None:
        kind = "data" if self.levels[epd.PIN_DC] else "cmd"
        if kind == "cmd":
            assert len(data) == 1, "a command is one byte with DC low"
            # The controller is busy for a while after reset, SW reset and master activation.
            if data[0] in (epd.SW_RESET, epd.MASTER_ACTIVATION):
                self.busy_left = self.busy_polls
            self.log.append(("cmd", data[0]))
        elif self.log and self.log[-1][0] == "data":
            self.log[-1] = ("data", self.log[-1][1] + bytes(data))
        else:
            self.log.append(("data", bytes(data)))

    def gpio_write(self, pin: int, level: int) -> None:
        self.levels[pin] = level
        if pin != epd.PIN_DC:
            self.log.append(("pin", pin, level))
        if pin == epd.PIN_RST and level == 1:
            self.busy_left = self.busy_polls

    def gpio_read(self, pin: int) -> int:
        assert pin == epd.PIN_BUSY
        if self.log[-1] != ("busy",):
            self.log.append(("busy",))
        if self.busy_left:
            self.busy_left -= 1
            return 1
        return 0

    def delay_ms(self, ms: int) -> None:
        if self.log and self.log[-1] == ("busy",):
            return  # polling delay inside a busy wait
        self.log.append(("delay", ms))

    def close(self) -> None:
        self.log.append(("closed",))


def cmd(code: int, data: bytes = b"") -> list[tuple]:
    return [("cmd", code)] + ([("data", data)] if data else [])


def datasheet_full_refresh(buffer: bytes) -> list[tuple]:
    """SSD1680 datasheet, typical operating sequence, for a 122x250 panel (RAM 16 x 250)."""
    reset = [
        ("pin", epd.PIN_PWR, 1),
        ("pin", epd.PIN_RST, 1),
        ("delay", 20),
        ("pin", epd.PIN_RST, 0),
        ("delay", 2),
        ("pin", epd.PIN_RST, 1),
        ("delay", 20),
        ("busy",),
    ]
    init = [
        *cmd(0x12),  # software reset
        ("busy",),
        *cmd(0x01, bytes([0xF9, 0x00, 0x00])),  # driver output: 250 gate lines
        *cmd(0x11, b"\x03"),  # data entry: X increment, Y increment
        *cmd(0x44, bytes([0x00, 0x0F])),  # RAM X: bytes 0..15 (122 px)
        *cmd(0x45, bytes([0x00, 0x00, 0xF9, 0x00])),  # RAM Y: 0..249
        *cmd(0x3C, b"\x05"),  # border waveform
        *cmd(0x21, b"\x00\x80"),  # display update control 1
        *cmd(0x18, b"\x80"),  # internal temperature sensor
        *cmd(0x4E, b"\x00"),
        *cmd(0x4F, b"\x00\x00"),
        ("busy",),
    ]
    show = [
        *cmd(0x4E, b"\x00"),
        *cmd(0x4F, b"\x00\x00"),
        *cmd(0x24, buffer),  # black/white RAM
        *cmd(0x4E, b"\x00"),
        *cmd(0x4F, b"\x00\x00"),
        *cmd(0x26, buffer),  # base for later partial refreshes
        *cmd(0x22, b"\xf7"),  # full update sequence
        *cmd(0x20),  # master activation
        ("busy",),
    ]
    sleep = [*cmd(0x10, b"\x01"), ("delay", 100), ("pin", epd.PIN_PWR, 0)]
    return reset + init + show + sleep


def test_full_refresh_follows_the_datasheet_sequence() -> None:
    spec = epd.PANELS["2in13_v4"]
    image = Image.new("1", spec.landscape, 1)
    image.putpixel((0, 0), 0)
    buffer = epd.frame_buffer(spec, image)
    bus = RecordingBus()
    driver = epd.SSD1680(bus, spec)

    driver.init_full()
    driver.display_full(buffer)
    driver.sleep()

    assert bus.log == datasheet_full_refresh(buffer)
    assert len(buffer) == 16 * 250


async def test_panel_backend_does_a_full_refresh_first_then_partial_and_sleeps() -> None:
    spec = epd.PANELS["2in13_v4"]
    bus = RecordingBus()
    backend = PanelBackend(epd.SSD1680(bus, spec))
    frame = Image.new("1", spec.landscape, 1)
    await backend.draw(frame, "partial", "invite")  # no base image yet: must be full
    assert ("cmd", epd.WRITE_RAM_RED) in bus.log
    assert bus.log[-4:] == [*cmd(0x10, b"\x01"), ("delay", 100), ("pin", epd.PIN_PWR, 0)]
    bus.log.clear()
    await backend.draw(frame, "partial", "invite")
    commands = [entry[1] for entry in bus.log if entry[0] == "cmd"]
    assert commands[-3:] == [epd.DISPLAY_UPDATE_CONTROL_2, epd.MASTER_ACTIVATION, epd.DEEP_SLEEP]
    assert ("data", bytes([epd.UPDATE_PARTIAL])) in bus.log
    assert epd.WRITE_RAM_RED not in commands  # the partial waveform compares against the base


def test_frame_buffer_maps_landscape_pixels_onto_portrait_ram() -> None:
    spec = epd.PANELS["2in13_v4"]
    image = Image.new("1", spec.landscape, 1)
    image.putpixel((249, 0), 0)  # top-right corner of the landscape frame
    buffer = epd.frame_buffer(spec, image)
    # Rotated 90 degrees counter-clockwise, top-right lands at RAM row 0, column 0 (MSB).
    assert buffer[0] == 0x7F
    assert buffer.count(0xFF) == len(buffer) - 1  # everything else, padding bits too, is white
    with pytest.raises(ValueError):
        epd.frame_buffer(spec, Image.new("1", (10, 10), 1))


def test_2in7_panel_uses_its_own_geometry() -> None:
    spec = epd.PANELS["2in7_v2"]
    bus = RecordingBus()
    driver = epd.SSD1680(bus, spec)
    driver.init_full()
    assert ("data", bytes([0x07, 0x01, 0x00])) in bus.log  # 264 gate lines
    assert ("data", bytes([0x00, 21])) in bus.log  # 176 px = 22 bytes


def test_a_panel_that_stays_busy_raises_instead_of_hanging(monkeypatch) -> None:
    monkeypatch.setattr(epd, "BUSY_TIMEOUT", 0.05)
    bus = RecordingBus(busy_polls=10**9)
    with pytest.raises(epd.PanelTimeout):
        epd.SSD1680(bus, epd.PANELS["2in13_v4"]).init_full()


@pytest.mark.parametrize("panel", sorted(epd.PANELS))
async def test_the_invite_qr_in_panel_ram_scans_to_the_link(panel: str, tmp_path) -> None:
    from hwctl import screens

    spec = epd.PANELS[panel]
    link = "DCACCOUNT:https://chat.example.org/new"
    content = screens.InviteContent(link, "chat", "chat.example.org", "3 people onboarded")
    bus = RecordingBus()
    await PanelBackend(epd.SSD1680(bus, spec)).draw(
        screens.render_invite(spec.landscape, content), "full", "invite"
    )
    i = bus.log.index(("cmd", epd.WRITE_RAM_BW))
    kind, ram = bus.log[i + 1]
    assert kind == "data" and len(ram) == spec.row_bytes * spec.height
    shown = picture_from_ram(spec, ram)
    assert shown.size == spec.landscape
    assert scan(shown, tmp_path) == [link]


class RecordingSpiDev:
    """A stand-in for the spidev module's SpiDev: records every transfer as it would go out."""

    instances: list[RecordingSpiDev] = []

    def __init__(self) -> None:
        self.transfers: list[bytes] = []
        self.opened: tuple[int, int] | None = None
        self.mode = -1
        self.max_speed_hz = 0
        RecordingSpiDev.instances.append(self)

    def open(self, bus: int, device: int) -> None:
        self.opened = (bus, device)

    def writebytes2(self, data: bytes) -> None:
        assert len(data) <= 4096, "spidev refuses a transfer over its 4096-byte buffer"
        self.transfers.append(bytes(data))

    def close(self) -> None:
        self.opened = None


class RecordingGpio:
    def __init__(self) -> None:
        self.outputs: set[int] = set()
        self.inputs: set[int] = set()
        self.writes: list[tuple[int, int]] = []

    def setup_output(self, pin: int, level: int = 0) -> None:
        self.outputs.add(pin)

    def setup_input(self, pin: int, pull_up: bool = False) -> None:
        self.inputs.add(pin)

    def write(self, pin: int, level: int) -> None:
        assert pin in self.outputs
        self.writes.append((pin, level))

    def read(self, pin: int) -> int:
        assert pin in self.inputs
        return 0  # never busy

    def close(self) -> None:
        pass


def test_a_frame_goes_over_spidev_in_4096_byte_chunks(monkeypatch) -> None:
    import sys
    import types

    from hwctl.gpio import SpiGpioBus

    monkeypatch.setitem(sys.modules, "spidev", types.SimpleNamespace(SpiDev=RecordingSpiDev))
    RecordingSpiDev.instances.clear()
    gpio = RecordingGpio()
    bus = SpiGpioBus(gpio)
    [spi] = RecordingSpiDev.instances
    assert spi.opened == (0, 0) and spi.mode == 0 and spi.max_speed_hz == 4_000_000
    assert gpio.outputs == {epd.PIN_RST, epd.PIN_DC, epd.PIN_PWR}
    assert gpio.inputs == {epd.PIN_BUSY}
    monkeypatch.setattr(bus, "delay_ms", lambda ms: None)
    spec = epd.PANELS["2in7_v2"]  # 22 x 264 = 5808 bytes: more than one transfer
    buffer = bytes(range(256)) * (spec.row_bytes * spec.height // 256) + b"\x55" * (
        spec.row_bytes * spec.height % 256
    )
    panel = epd.SSD1680(bus, spec)
    panel.init_full()
    spi.transfers.clear()
    panel.command(epd.WRITE_RAM_BW, buffer)
    assert [len(t) for t in spi.transfers] == [1, 4096, len(buffer) - 4096]
    assert spi.transfers[0] == bytes([epd.WRITE_RAM_BW]) and b"".join(spi.transfers[1:]) == buffer
    # DC low for the command byte, high for its data
    assert gpio.writes[-2:] == [(epd.PIN_DC, 0), (epd.PIN_DC, 1)]
