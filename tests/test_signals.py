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
from collections.abc import Callable
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


def catches_sigterm(pid: int) -> bool:
    """The process has a handler for SIGTERM (it is no longer killed by the default action)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert process.poll() is None, "the relay died while starting"
        assert time.monotonic() < deadline, "the relay never got there"
        time.sleep(0.0005)


@pytest.mark.parametrize("attempt", range(3))
def test_sigterm_while_python_imports_the_relay_exits_0(tmp_path: Path, attempt: int) -> None:
    """From the moment the relay's Python code runs (before the interpreter gets there, no
    program can catch a signal)."""
    process, _ = spawn(tmp_path, f"r{attempt}")
    wait_for(lambda: catches_sigterm(process.pid), process)
    process.send_signal(signal.SIGTERM)
    code, err = finish(process)
    assert code == 0, err


@pytest.mark.parametrize("attempt", range(3))
def test_sigterm_while_the_store_opens_exits_0(tmp_path: Path, attempt: int) -> None:
    process, _ = spawn(tmp_path, f"r{attempt}")
    wait_for((tmp_path / f"r{attempt}").exists, process)  # serve() has begun
    process.send_signal(signal.SIGTERM)
    code, err = finish(process)
    assert code == 0, err
