"""A stop signal at any moment of a relay's life ends it cleanly (exit code 0), never with the
default action (killed by the signal, exit -15), so systemd and the appliance's watchdog see a
clean stop and a good restart is never counted as a crash."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relay import config as config_mod
from tests.helpers import make_config

EXIT_TIMEOUT = 20.0


def spawn(tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], int]:
    config = make_config(tmp_path / name)
    path = tmp_path / f"{name}.toml"
    path.write_text(config_mod.to_toml(config), encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "relay", "serve", "--config", str(path)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return process, next(iter(config.listen.services().values()))


def finish(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail("the relay did not stop after SIGTERM")
    return process.returncode, err.decode(errors="replace")[-2000:]


@pytest.mark.parametrize("attempt", range(5))
def test_sigterm_as_the_first_port_accepts_exits_0(tmp_path: Path, attempt: int) -> None:
    process, port = spawn(tmp_path, f"r{attempt}")
    deadline = time.monotonic() + 30
    while True:  # poll hard: the signal must land while the other listeners are still opening
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert process.poll() is None, "the relay died while starting"
            assert time.monotonic() < deadline, "no port opened"
            time.sleep(0.001)
    process.send_signal(signal.SIGTERM)
    code, err = finish(process)
    assert code == 0, err


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.4, 0.8])
def test_sigterm_while_starting_exits_0(tmp_path: Path, delay: float) -> None:
    """While Python imports the relay, the store opens or the TLS identity is made."""
    process, _ = spawn(tmp_path, "r")
    time.sleep(delay)
    process.send_signal(signal.SIGTERM)
    code, err = finish(process)
    assert code == 0, err
