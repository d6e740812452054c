"""The appliance, booted: the QEMU twin runs the image's overlay, units and partition layout.

One twin per architecture is booted for the module: amd64, then arm64 (the Pi's: Cortex-A72 cores
on QEMU's virt board, emulated by TCG, with the Python packages at the Buildroot release's
versions). On each the tests run in order, like a person would: look at it, use it, pull the plug,
boot again, factory-reset it.
"""

from __future__ import annotations

import base64
import imaplib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from twin import ARCHES, BOOT_TIMEOUT, GUEST_DOMAIN, Twin, inbox, insecure_context, send

from hwctl import epd
from tests.hwctl.panel import scan, sent_frame

# Build and boots take minutes on a loaded 2-core machine: more than the suite's default timeout.
pytestmark = [pytest.mark.qemu, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module", params=ARCHES)
def twin(
    request: pytest.FixtureRequest,
    twin_builds: Callable[[str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Twin]:
    """Each architecture's twin, booted once; the module's tests run on one, then the other."""
    arch = request.param
    machine = Twin(twin_builds(arch), tmp_path_factory.mktemp(f"twin-run-{arch}"))
    machine.start()
    try:
        machine.wait_agent()
        machine.boot_seconds = machine.wait_ready(BOOT_TIMEOUT)
        yield machine
    finally:
        machine.kill()


def test_relay_answers_smtp_imap_and_http(twin: Twin) -> None:
    assert twin.answer(25, b"220 ").startswith(b"220 "), twin.diagnostics()
    assert twin.answer(587, b"220 ").startswith(b"220 ")
    assert twin.answer(143, b"* OK").startswith(b"* OK")
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    http = twin.answer(80, b"HTTP/1.1 ", request=request)
    assert http.startswith(b"HTTP/1.1 200"), http


def test_root_is_slot_a_read_only_and_data_is_the_fourth_partition(twin: Twin) -> None:
    root = twin.check("findmnt -n -o SOURCE,FSTYPE,OPTIONS /").split()
    assert root[:2] == ["/dev/vda2", "squashfs"] and "ro" in root[2].split(",")
    assert twin.run("touch /etc/probe").returncode != 0
    data = twin.check("findmnt -n -o SOURCE,FSTYPE,OPTIONS /data").split()
    assert data[:2] == ["/dev/vda4", "f2fs"] and "noatime" in data[2].split(",")
    # First boot grew the 64 MiB data partition of the image to the end of the 1 GiB card.
    disk, start, size = (
        int(twin.check(f"cat /sys/block/vda/{f}")) for f in ("size", "vda4/start", "vda4/size")
    )
    assert disk - (start + size) < 16 * 2048  # sectors: less than 16 MiB left unused
    assert size > 256 * 2048
    assert twin.check("cat /data/relay/relay.toml").startswith(f'mail_domain = "{GUEST_DOMAIN}"')


def test_logs_and_scratch_space_stay_in_ram(twin: Twin) -> None:
    for path in ("/tmp", "/var/log", "/var"):
        assert twin.check(f"findmnt -n -o FSTYPE {path}").strip() == "tmpfs", path
    journal = twin.check("journalctl --header | grep -m1 'File path'")
    assert "/run/log/journal" in journal
    assert twin.check("cat /sys/class/watchdog/watchdog0/state").strip() == "active"


def test_the_display_shows_an_invite_that_logs_in(twin: Twin, tmp_path: Path) -> None:
    """hwctl draws the invite through the real panel driver into the simulated HAT; the QR is
    read back from the SPI bytes of that update, and the link it holds logs in."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        frames = twin.run("tail -n1 /run/hwctl-sim/frames/frames.jsonl")
        if frames.returncode == 0 and '"screen": "invite"' in frames.stdout:
            break
        assert time.monotonic() < deadline, twin.diagnostics()
        time.sleep(2)
    sent = base64.b64decode(twin.check("base64 -w0 /run/hwctl-sim/panel/last.spi"))
    links = scan(sent_frame(sent, epd.PANELS["2in13_v4"]), tmp_path)
    assert len(links) == 1 and links[0].startswith("dclogin:"), links
    url = urlsplit(links[0])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["ih"] == GUEST_DOMAIN and query["is"] == "ssl"
    with imaplib.IMAP4_SSL(
        "127.0.0.1", twin.ports[int(query["ip"])], ssl_context=insecure_context(), timeout=30
    ) as imap:
        assert imap.login(unquote(url.path), query["p"])[0] == "OK"


def test_message_accepted_before_power_cut_is_there_after_reboot(
    twin: Twin, account: tuple[str, str]
) -> None:
    addr, password = account
    send(twin, addr, password, "before the power cut")
    twin.kill()  # no shutdown, no sync: the 250 must have meant "on flash"
    twin.start()
    twin.wait_agent()
    twin.wait_ready(BOOT_TIMEOUT)
    messages = inbox(twin, addr, password)
    assert len(messages) == 1
    assert b"multipart/encrypted" in messages[0]


def certificate(twin: Twin) -> str:
    """Fingerprint of the relay's certificate: a reset relay comes back with a new identity."""
    return twin.check("sha256sum /data/relay/tls/cert.pem").split()[0]


def wait_for_new_identity(twin: Twin, old: str) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        result = twin.run("sha256sum /data/relay/tls/cert.pem")
        if result.returncode == 0 and result.stdout.split()[0] != old:
            break
        assert time.monotonic() < deadline, twin.diagnostics()
        time.sleep(3)
    twin.wait_relay_active(BOOT_TIMEOUT)


def test_a_store_it_cannot_read_stops_the_relay_without_a_reboot_loop(twin: Twin) -> None:
    """A relay on data a newer version made unreadable to it (after a rollback: both slots share
    /data) exits 65 (relay/start_refusal.py); the unit does not restart it, so its start limit
    does not reboot the box into the same refusal again and again."""
    marker = "/data/relay/store/FORMAT"
    saved = twin.check(f"cat {marker}")
    too_new = json.dumps({"format": 99, "readable_by": 98})
    twin.check(f"echo '{too_new}' > {marker}")
    twin.run("systemctl restart --no-block chatmail-relay")

    def state() -> tuple[str, ...]:
        return tuple(
            twin.check(f"systemctl show -P {name} chatmail-relay").strip()
            for name in ("ActiveState", "ExecMainStatus", "NRestarts")
        )

    deadline = time.monotonic() + 120
    while state()[:2] != ("failed", "65"):
        assert time.monotonic() < deadline, f"{state()}\n{twin.diagnostics()}"
        time.sleep(2)
    stopped = state()
    time.sleep(10)  # RestartSec is 3 s: a restart would have come
    assert state() == stopped
    journal = twin.check("journalctl -b -u chatmail-relay -n 50 --no-pager")
    assert "written by a newer relay (store format 99" in journal
    twin.check(f"printf '%s' '{saved}' > {marker}")  # the newer version's data taken back
    twin.check("systemctl reset-failed chatmail-relay && systemctl start --no-block chatmail-relay")
    twin.wait_relay_active(BOOT_TIMEOUT)


def test_holding_the_button_resets_the_relay(twin: Twin, account: tuple[str, str]) -> None:
    addr, password = account
    inbox(twin, addr, password)  # the first login creates the account
    before = certificate(twin)
    # The simulated button of hwctl (the twin runs hwctl with its simulators): hold 10.5 s.
    pressed = twin.run("python3 -m hwctl press --long --sim /run/hwctl-sim", timeout=90)
    assert pressed.returncode == 0, pressed.stdout + pressed.stderr
    wait_for_new_identity(twin, before)  # the relay wiped its data at restart
    assert inbox(twin, addr, password) == []  # mail from before the reset is gone
    assert twin.check("findmnt -n -o SOURCE /data").strip() == "/dev/vda4"


def test_factory_reset_flag_on_the_card_wipes_all_of_data(twin: Twin) -> None:
    twin.check("echo kept > /data/system/marker && sync")
    before = certificate(twin)
    # The full reset (also what a PC can do: an empty file chatmail-factory-reset on the boot
    # partition): flag, reboot, mkfs before /data is mounted. In the background: the reboot
    # would cut the guest agent's answer.
    twin.check("(sleep 1; /usr/libexec/chatmail/factory-reset request) >/dev/null 2>&1 &")
    twin.wait_exit(timeout=120)
    twin.start()
    twin.wait_agent()
    twin.wait_ready(BOOT_TIMEOUT)
    assert twin.run("test -e /data/system/marker").returncode == 1
    assert certificate(twin) != before
    boot_files = twin.check("ls /boot")  # the automount: the flag was removed after the wipe
    assert "chatmail-factory-reset" not in boot_files
    assert "cmdline.txt" in boot_files


def test_a_relay_that_keeps_dying_gets_the_box_rebooted(twin: Twin) -> None:
    """The unit's StartLimitAction=reboot: a relay that dies more than StartLimitBurst (10) times
    within StartLimitIntervalSec is not restarted once more but the box reboots, out of whatever
    state it got into (QEMU runs with -no-reboot, so the reboot ends the QEMU process)."""
    # Killed as the kernel's OOM killer would, every two seconds; systemd restarts it after 3 s.
    # In the background: the reboot cuts the guest agent off.
    twin.check(
        "(for i in $(seq 60); do systemctl kill --signal=KILL chatmail-relay; sleep 2; done)"
        " >/dev/null 2>&1 &"
    )
    time.sleep(15)
    restarts = int(twin.check("systemctl show -p NRestarts --value chatmail-relay"))
    assert restarts >= 2  # it is dying and being restarted
    twin.wait_exit(timeout=300)  # nobody asked for this reboot but the start limit
    twin.start()
    twin.wait_agent()
    twin.wait_ready(BOOT_TIMEOUT)  # returns once the relay is active again
