"""`python -m hwctl`: run the hardware process, or poke its simulator.

python -m hwctl run --sim DIR            simulators: PNG frames and a simulated panel, LED timeline,
                                         socket button
python -m hwctl run                      real hardware (Raspberry Pi, Waveshare HAT, ACT LED)
python -m hwctl press [--long] --sim DIR press the simulated button (--long: hold 10.5 s)
python -m hwctl screenshots OUT_DIR      render the example screens used in the docs
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
import tomllib
from pathlib import Path

import trio

from hwctl import button, epd, screens
from hwctl.display import Display, PanelBackend, SimulatorBackend
from hwctl.leds import GpioLed, Leds, SimLed, SysfsLed

DEFAULT_DATA_DIR = Path("/data/relay")
DEFAULT_ADMIN_SOCKET = DEFAULT_DATA_DIR / "admin.sock"
SYSFS_LEDS = Path("/sys/class/leds")


COMMANDS = ("run", "press", "restore", "screenshots")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["run", *argv]
    args = _parser().parse_args(argv)
    return args.command(args)


def apply_relay_config(args: argparse.Namespace) -> None:
    """--config: take the data dir (and so the admin socket) from the relay's own config."""
    if args.config is None:
        return
    with open(args.config, "rb") as f:
        data_dir = Path(tomllib.load(f)["data_dir"])
    if not data_dir.is_absolute():
        data_dir = args.config.parent / data_dir
    args.data_dir = data_dir
    if args.admin_socket is None:
        args.admin_socket = data_dir / "admin.sock"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwctl", description="Appliance hardware control.")
    sub = parser.add_subparsers(required=True)

    p = sub.add_parser("run", help="run the display, LEDs, button, mDNS and USB handling")
    p.add_argument("--config", type=Path, help="the relay's config file (finds the data dir)")
    p.add_argument("--admin-socket", type=Path, default=None, help="default DATA_DIR/admin.sock")
    p.add_argument("--sim", type=Path, metavar="DIR", help="use simulators writing into DIR")
    p.add_argument("--panel", choices=sorted(epd.PANELS), default="2in13_v4")
    p.add_argument(
        "--led",
        action="append",
        default=[],
        metavar="SPEC",
        help="sysfs:NAME or gpio:PIN (repeatable; default sysfs:ACT on hardware)",
    )
    p.add_argument("--button-pin", type=int, default=button.BUTTON_PIN)
    p.add_argument(
        "--mdns",
        action=argparse.BooleanOptionalAction,
        help="announce the relay with mDNS (default: on, off with --sim)",
    )
    p.add_argument("--hostname", default=None, help="mDNS host name (default: this host's)")
    p.add_argument(
        "--usb",
        action=argparse.BooleanOptionalAction,
        help="handle USB data and backup drives (default: on, off with --sim)",
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument(
        "--data-switch-file",
        type=Path,
        default=None,
        help="where a USB data drive is recorded for the boot-time mount",
    )
    p.set_defaults(command=cmd_run)

    p = sub.add_parser("press", help="press the simulated button")
    p.add_argument("--sim", type=Path, required=True, metavar="DIR")
    p.add_argument("--long", action="store_true", help="hold long enough for a factory reset")
    p.add_argument("--hold", type=float, default=None, help="seconds to hold (default 0.2)")
    p.set_defaults(command=cmd_press)

    p = sub.add_parser("restore", help="restore an identity backup into a running fresh relay")
    p.add_argument("file", type=Path)
    p.add_argument("--code", required=True, help="the restore code shown after the backup")
    p.add_argument("--admin-socket", type=Path, default=DEFAULT_ADMIN_SOCKET)
    p.set_defaults(command=cmd_restore)

    p = sub.add_parser("screenshots", help="render the example screens into a directory")
    p.add_argument("out", type=Path)
    p.add_argument("--panel", choices=sorted(epd.PANELS), default="2in13_v4")
    p.set_defaults(command=cmd_screenshots)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    apply_relay_config(args)
    if args.admin_socket is None:
        args.admin_socket = args.data_dir / "admin.sock"
    trio.run(run, args)
    return 0


async def run(args: argparse.Namespace) -> None:
    from hwctl.controller import Controller

    spec = epd.PANELS[args.panel]
    levels_send, levels = trio.open_memory_channel[bool](32)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
        if args.sim is not None:
            args.sim.mkdir(parents=True, exist_ok=True)
            display = Display(SimulatorBackend(args.sim, spec))
            leds = Leds([SimLed(args.sim / "leds.jsonl")])
            await nursery.start(button.sim_button, args.sim / "button.sock", levels_send)
        else:
            from hwctl.gpio import SpiGpioBus, open_gpio

            gpio = open_gpio()
            display = Display(PanelBackend(epd.SSD1680(SpiGpioBus(gpio), spec)))
            leds = Leds(_hardware_leds(args.led or ["sysfs:ACT"], gpio))
            nursery.start_soon(button.gpio_button, gpio, args.button_pin, levels_send)
        controller = Controller(args.admin_socket, display, leds)
        hardware = args.sim is None
        if args.mdns if args.mdns is not None else hardware:
            from hwctl.mdns import announce_relay

            nursery.start_soon(announce_relay, controller, args.hostname or socket.gethostname())
        if args.usb if args.usb is not None else hardware:
            from hwctl import usb

            switch = args.data_switch_file or usb.DEFAULT_SWITCH_FILE
            nursery.start_soon(usb.watch_usb, controller, args.data_dir, switch)
        await controller.run(levels)


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    """systemd stops us with SIGTERM: unwind properly so mDNS sends its goodbyes."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


def _hardware_leds(specs: list[str], gpio) -> list:
    leds = []
    for spec in specs:
        kind, _, name = spec.partition(":")
        if kind == "gpio":
            leds.append(GpioLed(gpio, int(name)))
            continue
        # Older kernels call the Pi's green LED led0.
        for candidate in (name, "led0") if name == "ACT" else (name,):
            if (SYSFS_LEDS / candidate).is_dir():
                leds.append(SysfsLed(SYSFS_LEDS / candidate))
                break
    return leds


def cmd_press(args: argparse.Namespace) -> int:
    hold = args.hold if args.hold is not None else (button.HOLD_SECONDS + 0.5 if args.long else 0.2)
    path = args.sim / "button.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError as e:
            print(f"hwctl press: no simulator listening at {path}: {e.strerror}", file=sys.stderr)
            return 1
        sock.sendall(b"down\n")
        time.sleep(hold)
        sock.sendall(b"up\n")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from hwctl import backup
    from hwctl.admin_client import AdminError, connect

    try:
        identity = backup.decrypt(args.file.read_bytes(), args.code)
    except (OSError, backup.BackupError) as e:
        print(f"hwctl restore: {e}", file=sys.stderr)
        return 1

    async def restore() -> dict:
        async with connect(args.admin_socket) as client:
            return await client.call("identity_import", **identity)

    try:
        result = trio.run(restore)
    except AdminError as e:
        print(f"hwctl restore: {e}", file=sys.stderr)
        return 1
    print(
        f"restored {result['restored']} files and {result['accounts']} accounts; the relay restarts"
    )
    return 0


def cmd_screenshots(args: argparse.Namespace) -> int:
    size = epd.PANELS[args.panel].landscape
    args.out.mkdir(parents=True, exist_ok=True)
    invite = screens.InviteContent(
        qr_payload="DCACCOUNT:https://chat.example.org/new",
        name="chatmail-relay",
        address="chat.example.org",
        status="12 people · healthy",
    )
    screens.render_invite(size, invite).save(args.out / "invite.png")
    lan = screens.InviteContent(
        qr_payload=(
            "dclogin:k3x9q2m7a@[192.168.1.20]?p=Xq7%21rT2pL9wZ&v=1&ih=192.168.1.20&ip=993"
            "&is=ssl&sh=192.168.1.20&sp=465&ss=ssl&ic=3"
        ),
        name="chatmail-relay",
        address="192.168.1.20",
        status="3 people · healthy",
    )
    screens.render_invite(size, lan).save(args.out / "invite-lan.png")
    rows = [
        ("IP", "192.168.1.20"),
        ("Domain", "chat.example.org"),
        ("Accounts", "12"),
        ("Uptime", "3 d 4 h"),
        ("Health", "ok"),
    ]
    screens.render_info(size, rows, "chatmail-relay").save(args.out / "info.png")
    screens.render_countdown(size, 7).save(args.out / "reset-countdown.png")
    proxy = "ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpleGFtcGxlLXBhc3N3b3Jk@chat.example.org:443#chat.example.org"
    screens.render_proxy(size, proxy, "chat.example.org").save(args.out / "proxy.png")
    print(
        f"wrote invite.png, invite-lan.png, info.png, proxy.png, reset-countdown.png to {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
