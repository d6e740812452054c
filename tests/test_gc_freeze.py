"""The relay process sets the objects of its start aside from the cyclic garbage collector: a full
collection would otherwise walk all of them (modules, classes, functions: never garbage) and
stop every connection for tens of milliseconds (bench/mailflow's p99)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from relay import server

PROBE = """
import gc
import relay.server
before = len(gc.get_objects())
frozen = relay.server.keep_startup_objects_out_of_gc()
print(before, frozen, len(gc.get_objects()))
"""


def test_a_full_collection_no_longer_walks_the_startup_objects() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    before, frozen, after = map(int, out.split())
    assert frozen > 20_000
    assert after < before // 20


def test_the_relay_process_does_it_once_it_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(server, "keep_startup_objects_out_of_gc", lambda: calls.append("freeze"))

    class Next(server.trio.TaskStatus):  # type: ignore[misc]
        def started(self, value: object = None) -> None:
            calls.append(f"started {value}")

    server._OnReady(Next()).started("ports")  # type: ignore[arg-type]
    assert calls == ["freeze", "started ports"]
