"""The image's D-Bus policy for RAUC (overlay/usr/share/dbus-1/system.d/chatmail-rauc.conf) on a
system bus configured like Debian's stock one: the relay's user may ask the RAUC service for its
status and install through it; any other user is refused. (This machine has no user "relay",
so "nobody" stands in for it; "daemon" is the other user.)"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import need
from tests.update.raucsys import REPO, RaucSystem, start

POLICY = REPO / "overlay" / "usr" / "share" / "dbus-1" / "system.d" / "chatmail-rauc.conf"
STOCK = Path("/usr/share/dbus-1/system.conf")


def stock_bus_with_policy(directory: Path) -> Callable[[Path], str]:
    """Debian's system bus config listening at the socket, with only our policy included."""

    def config(socket: Path) -> str:
        text = STOCK.read_text()
        text = re.sub(r"\s*<(user|pidfile)>.*?</\1>", "", text)
        text = re.sub(r"\s*<include[^>]*>.*?</include(dir)?>", "", text)
        text = re.sub(r"<listen>.*?</listen>", f"<listen>unix:path={socket}</listen>", text)
        policy = directory / "chatmail-rauc.conf"
        policy.write_text(POLICY.read_text().replace('user="relay"', 'user="nobody"'))
        return text.replace("</busconfig>", f"  <include>{policy}</include>\n</busconfig>")

    return config


@pytest.fixture
def policed_system(tmp_path: Path) -> Iterator[tuple[RaucSystem, Path]]:
    need(STOCK.exists(), f"needs the stock system bus config {STOCK} (Debian package dbus)")
    need(bool(shutil.which("setpriv")), "needs setpriv (util-linux)")
    shared = Path(tempfile.mkdtemp(prefix="rauc-bus-"))  # where other users reach the socket
    shared.chmod(0o755)
    try:
        system = start(
            tmp_path / "rauc",
            socket=shared / "bus.socket",
            bus_config=stock_bus_with_policy(tmp_path),
        )
        try:
            yield system, shared
        finally:
            system.stop()
    finally:
        shutil.rmtree(shared)


def rauc_as(user: str, shared: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={shared / 'bus.socket'}"}
    account = pwd.getpwnam(user)
    ids = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
    command = ["setpriv", *ids, "rauc", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_the_relay_user_may_install_and_no_other(policed_system: tuple[RaucSystem, Path]) -> None:
    system, shared = policed_system
    assert rauc_as("nobody", shared, "status", "--output-format=json").returncode == 0
    refused = rauc_as("daemon", shared, "status", "--output-format=json")
    assert refused.returncode != 0 and "Rejected send message" in refused.stderr
    bundle, root = system.make_bundle("policed", "3.0")
    owned = shared / "bundle.raucb"  # the relay installs its own copy
    shutil.copy(bundle, owned)
    os.chown(owned, pwd.getpwnam("nobody").pw_uid, -1)
    refused = rauc_as("daemon", shared, "install", str(owned))
    assert refused.returncode != 0 and system.primary == "A"
    done = rauc_as("nobody", shared, "install", str(owned))
    assert done.returncode == 0, done.stdout + done.stderr
    assert system.slot(1)[: len(root)] == root and system.primary == "B"
