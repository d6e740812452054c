"""`relay serve` as users run it: every port answers, signals, reload, the embedded default."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relay import config as config_mod
from relay.config import Accounts, Privacy
from relay.log import Logger
from relay.tls import make_self_signed, write_pair
from tests.helpers import (
    client_context,
    deliver_to,
    make_account,
    make_config,
    start_relay_process,
    stop_relay_process,
)

BANNERS = {"smtp": b"220 ", "submission": b"220 ", "imap": b"* OK"}
TLS_SERVICES = ("submissions", "imaps", "https")


def read_banner(sock: socket.socket | ssl.SSLSocket) -> bytes:
    sock.settimeout(5)
    return sock.recv(4096)


def test_every_configured_port_answers_its_protocol(tmp_path: Path) -> None:
    # How fast they answer is bench/startup's figure, not a test's: here each must speak.
    config = make_config(tmp_path / "data")
    relay = start_relay_process(config, tmp_path / "relay.toml")
    try:
        for service, banner in BANNERS.items():
            with socket.create_connection(("127.0.0.1", relay.port(service)), timeout=5) as s:
                assert read_banner(s).startswith(banner), service
        for service in TLS_SERVICES:
            with (
                socket.create_connection(("127.0.0.1", relay.port(service)), timeout=5) as raw,
                client_context(config).wrap_socket(raw) as s,
            ):
                assert s.version() in ("TLSv1.2", "TLSv1.3"), service
        with socket.create_connection(("127.0.0.1", relay.port("http")), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_banner(s).startswith(b"HTTP/1.1 ")
    finally:
        stop_relay_process(relay)


def test_sigterm_stops_cleanly_with_a_session_open(tmp_path: Path) -> None:
    relay = start_relay_process(make_config(tmp_path / "data"), tmp_path / "relay.toml")
    idle = socket.create_connection(("127.0.0.1", relay.port("imap")), timeout=5)  # an open session
    assert read_banner(idle).startswith(b"* OK")
    relay.process.send_signal(signal.SIGTERM)
    # A generous backstop, still half the open session's 60 s pre-login timeout: a relay that
    # waited for the session to time out fails; how quickly it stops is bench/'s business.
    assert relay.process.wait(timeout=30) == 0
    idle.close()


def test_sighup_swaps_the_certificate_while_a_connection_stays_open(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    relay = start_relay_process(config, tmp_path / "relay.toml")
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        port = relay.port("imaps")
        old = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))
        assert read_banner(old).startswith(b"* OK")
        old_cert = old.getpeercert(binary_form=True)

        write_pair(config.cert_path, config.key_path, *make_self_signed("127.0.0.1"))
        relay.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while True:
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as new:
                if new.getpeercert(binary_form=True) != old_cert:
                    break
            assert time.monotonic() < deadline, "the new certificate was never served"
            time.sleep(0.05)

        old.sendall(b"a1 NOOP\r\n")
        assert b"a1 OK" in read_banner(old)  # the old session survived the swap
        old.close()
    finally:
        stop_relay_process(relay)


def test_embedded_default_prints_where_to_connect_and_how_to_onboard(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "relay", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        output = b""
        deadline = time.monotonic() + 15
        while b"Stop with Ctrl-C" not in output and time.monotonic() < deadline:
            output += process.stdout.readline()
        text = output.decode()
        assert "dclogin:" in text and "ic=3" in text
        assert "imaps" in text and "127.0.0.1:" in text
        assert (tmp_path / "relay-data" / "tls" / "cert.pem").exists()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)


def test_no_log_removes_addresses_and_ips() -> None:
    out = io.StringIO()
    log = Logger(no_log=True, stream=out)
    log.info("login-failed", user=log.redact("abcdefghi@[127.0.0.1]"), ip=log.redact("10.1.2.3"))
    log.info("forgotten-redact", detail="from alice@example.org at 192.168.0.7 and fe80::1")
    text = out.getvalue()
    for secret in (
        "abcdefghi",
        "127.0.0.1",
        "10.1.2.3",
        "alice@example.org",
        "192.168.0.7",
        "fe80::1",
    ):
        assert secret not in text
    assert "login-failed" in text and "forgotten-redact" in text


def test_no_log_relay_writes_no_ip_to_its_log(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path / "data"), privacy=Privacy(no_log=True))
    relay = start_relay_process(config, tmp_path / "relay.toml", stderr=subprocess.PIPE)
    try:
        with socket.create_connection(("127.0.0.1", relay.port("imap")), timeout=5) as s:
            read_banner(s)
            s.sendall(b"a1 LOGIN someone@[127.0.0.1] password1234\r\n")
            read_banner(s)
    finally:
        stop_relay_process(relay)
    assert relay.process.stderr is not None
    log = relay.process.stderr.read().decode()
    assert "listening" in log
    assert "127.0.0.1" not in log and "someone" not in log


@pytest.mark.parametrize("service", TLS_SERVICES)
def test_plain_text_on_a_tls_port_gets_no_service(tmp_path: Path, service: str) -> None:
    relay = start_relay_process(make_config(tmp_path / "data"), tmp_path / "relay.toml")
    try:
        with socket.create_connection(("127.0.0.1", relay.port(service)), timeout=5) as s:
            s.sendall(b"EHLO plain\r\n")
            s.settimeout(5)
            assert not s.recv(100).startswith((b"220", b"* OK", b"HTTP"))
    finally:
        stop_relay_process(relay)


def post_new(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"POST /new HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        return int(read_banner(s).split()[1])


def test_sighup_applies_a_changed_setting_live(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    relay = start_relay_process(config, tmp_path / "relay.toml")
    try:
        assert post_new(relay.port("http")) == 200
        closed = dataclasses.replace(config, accounts=Accounts(registration_open=False))
        relay.config_path.write_text(config_mod.to_toml(closed))
        relay.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while post_new(relay.port("http")) != 403:
            assert time.monotonic() < deadline, "registration stayed open after SIGHUP"
            time.sleep(0.05)
    finally:
        stop_relay_process(relay)


def test_sighup_with_a_broken_config_keeps_serving(tmp_path: Path) -> None:
    relay = start_relay_process(
        make_config(tmp_path / "data"), tmp_path / "relay.toml", stderr=subprocess.PIPE
    )
    try:
        relay.config_path.write_text("mail_domain = \n")
        relay.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert post_new(relay.port("http")) == 200
    finally:
        stop_relay_process(relay)
    assert relay.process.stderr is not None
    assert "reload-failed" in relay.process.stderr.read().decode()


async def test_a_stopped_relay_can_start_again_in_the_same_process(tmp_path: Path) -> None:
    import trio

    from relay.server import serve

    config = make_config(tmp_path / "data")
    addr = f"abcdefghi@{config.address_domain}"
    for round_ in range(2):
        async with trio.open_nursery() as nursery:
            listening = await nursery.start(
                lambda task_status: serve(
                    config, log=Logger(level="error"), task_status=task_status
                )
            )
            store = listening.app.store
            assert await make_account(store, addr, "password123")
            if round_ == 0:
                await deliver_to(store, [addr], b"Subject: kept\r\n\r\nbody\r\n")
            else:
                snapshot = await store.snapshot(addr, "INBOX")
                assert len(snapshot.messages) == 1  # closed cleanly, reopened with its data
            nursery.cancel_scope.cancel()


def test_a_store_from_a_newer_relay_is_refused_with_a_reason_and_no_restart_asked(
    tmp_path: Path,
) -> None:
    """After a rolled-back update whose store this version cannot read (relay/store/compat.py):
    a clear reason on stderr and for the panel, and exit 65, which the appliance's unit does not
    restart; a start that succeeds again removes the panel's note."""
    config = make_config(tmp_path / "data")
    stop_relay_process(start_relay_process(config, tmp_path / "relay.toml"))  # the store exists
    marker = config.data_dir / "store" / "FORMAT"
    marker.write_text('{"format": 99, "readable_by": 98}')
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    refused = subprocess.run(
        [sys.executable, "-m", "relay", "serve", "--config", str(tmp_path / "relay.toml")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 65, refused.stderr
    assert "written by a newer relay (store format 99" in refused.stderr
    assert "Traceback" not in refused.stderr
    note = config.data_dir / "start-refused.txt"
    assert note.read_text().splitlines()[0] == "The data is from a newer"
    marker.write_text('{"format": 1, "readable_by": 1}')  # the newer version took it back
    stop_relay_process(start_relay_process(config, tmp_path / "relay.toml"))
    assert not note.exists()
