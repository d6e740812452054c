"""What a prober sees on the Shadowsocks port: it takes bytes and never answers. Random bytes, a
short salt or silence all get nothing, and the connection is closed only once the probe timeout
has passed since it was accepted. A SIGHUP reload with a new password applies to the next
connections; a new port waits for a restart."""

from __future__ import annotations

import dataclasses
import io
import os
import socket
import time
from pathlib import Path

import pytest
import trio

from relay import config as config_mod
from relay.config import Config
from relay.log import Logger
from relay.server import reload
from relay.shadowsocks import link
from tests.helpers import RelayServer, free_ports
from tests.shadowsocks.test_ss_local import PROBE_TIMEOUT, ss_config, ss_port
from tests.shadowsocks.util import HOST, read_all, socks_connect, ss_local


@pytest.fixture
def relay_config(tmp_path: Path) -> Config:
    return ss_config(tmp_path / "data")


def probe(port: int, payload: bytes) -> tuple[bytes, float]:
    with socket.create_connection((HOST, port), timeout=PROBE_TIMEOUT * 10) as sock:
        start = time.monotonic()
        if payload:
            sock.sendall(payload)
        answer = read_all(sock)
        return answer, time.monotonic() - start


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x16\x03\x01", os.urandom(31), os.urandom(2000), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
    ids=["silence", "tls-start", "short-salt", "random", "http"],
)
async def test_a_probe_gets_nothing_and_waits_for_the_timeout(
    relay_server: RelayServer, payload: bytes
) -> None:
    answer, held = await trio.to_thread.run_sync(probe, ss_port(relay_server), payload)
    assert answer == b""
    assert held >= PROBE_TIMEOUT * 0.9  # not closed at once: that would tell a prober something


async def test_a_reload_moves_the_port_and_the_new_password_holds(
    relay_server: RelayServer, tmp_path: Path
) -> None:
    app = relay_server.app
    path = tmp_path / "relay.toml"
    path.write_text(config_mod.to_toml(app.config))
    app.config = dataclasses.replace(app.config, source=path)
    old = link.password(app.config)
    (new_port,) = free_ports(1)
    ss = dataclasses.replace(app.config.shadowsocks, password="a-new-password-1", port=new_port)
    path.write_text(config_mod.to_toml(dataclasses.replace(app.config, shadowsocks=ss)))
    out = io.StringIO()
    app.log = Logger(stream=out)
    assert (await reload(app))["restart_required"] == []
    assert app.config.shadowsocks.port == ss_port(relay_server) == new_port  # moved live
    imap = relay_server.port("imap")

    def greeting(password: str) -> bytes:
        with ss_local(ss_port(relay_server), password, ss.cipher) as socks:
            sock = socks_connect(socks, HOST, imap, timeout=PROBE_TIMEOUT * 10)
            with sock:
                return sock.recv(100)

    assert (await trio.to_thread.run_sync(greeting, "a-new-password-1")).startswith(b"* OK")
    assert await trio.to_thread.run_sync(greeting, old) == b""
