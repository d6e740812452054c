"""`relay queue list|retry|delete` on a stopped relay's store and through an admin socket."""

from __future__ import annotations

import argparse
import json
import socket
import threading
from pathlib import Path

import pytest
import trio

from relay.federation.cli import queue_delete, queue_list, queue_retry
from relay.log import Logger
from relay.store import open_store
from tests.helpers import make_config

SENDER = "alice1234@[127.0.0.1]"


def enqueue(config, *recipients: str) -> list[str]:
    async def go() -> list[str]:
        async with open_store(config, Logger(level="warning"), expiry_interval=None) as store:
            ids = [
                await store.enqueue(SENDER, [r], b"Subject: x\r\n\r\nhi\r\n") for r in recipients
            ]
            await store.queue_update(ids[0], attempts=3, last_error="421 Failed to connect")
            return ids

    return trio.run(go)


def entries(config) -> list:
    async def go() -> list:
        async with open_store(config, Logger(level="warning"), expiry_interval=None) as store:
            return await store.queue_list()

    return trio.run(go)


def test_list_retry_delete_on_a_stopped_relay(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = make_config(tmp_path / "data")
    first, second = enqueue(config, "bob123456@[127.0.0.3]", "carol1234@[127.0.0.4]")
    assert queue_list(config, argparse.Namespace(json=False)) == 0
    out = capsys.readouterr().out
    assert first in out and second in out and "last error: 421 Failed to connect" in out
    assert "2 message(s) in the queue" in out
    assert queue_list(config, argparse.Namespace(json=True)) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {e["id"] for e in listed} == {first, second}

    assert queue_retry(config, argparse.Namespace(ids=[first])) == 0
    assert "1 message(s) will be tried now" in capsys.readouterr().out
    [entry] = [e for e in entries(config) if e.id == first]
    assert entry.attempts == 3 and entry.next_attempt.timestamp() <= entry.created.timestamp() + 60

    assert queue_delete(config, argparse.Namespace(ids=[second])) == 0
    assert [e.id for e in entries(config)] == [first]
    assert queue_delete(config, argparse.Namespace(ids=["nonexistent"])) == 1
    assert "no such queue entry: nonexistent" in capsys.readouterr().err
    assert queue_delete(config, argparse.Namespace(ids=[])) == 1


def test_a_running_relay_is_asked_over_its_admin_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = make_config(tmp_path / "data")
    config.data_dir.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(config.data_dir / "admin.sock"))
    server.listen(1)
    requests = []

    def answer() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rwb") as f:
            requests.append(json.loads(f.readline()))
            f.write(json.dumps({"id": 1, "result": {"changed": 2}}).encode() + b"\n")
            f.flush()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    assert queue_retry(config, argparse.Namespace(ids=[])) == 0
    thread.join(timeout=10)
    server.close()
    assert requests == [{"id": 1, "method": "queue", "params": {"action": "retry", "ids": []}}]
    assert "2 message(s) will be tried now" in capsys.readouterr().out
    # the store was left alone: a running relay owns it
    assert not (config.data_dir / "store").exists()
