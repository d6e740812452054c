"""The admin socket: a client that goes away at a bad moment must not take the relay down."""

from __future__ import annotations

import json
import socket

import pytest
import trio

from relay import admin
from tests.helpers import RelayServer


async def _status(path: str) -> dict:
    with trio.fail_after(5):
        stream = await trio.open_unix_socket(path)
        async with stream:
            await stream.send_all(b'{"id": 1, "method": "status"}\n')
            data = b""
            while not data.endswith(b"\n"):
                data += await stream.receive_some(65536)
    return json.loads(data)


async def test_a_client_that_hangs_up_before_its_answer_does_not_stop_the_relay(
    relay_server: RelayServer,
) -> None:
    path = str(relay_server.config.data_dir / "admin.sock")
    assert (await _status(path))["result"]["lan"] is True
    for _ in range(5):
        # Many requests, then a reset: the relay's answers hit a closed socket.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        sock.sendall(b'{"id": 1, "method": "status"}\n' * 200)
        sock.close()
    await trio.sleep(0.5)
    assert (await _status(path))["result"]["lan"] is True


async def test_a_client_that_stops_reading_is_dropped(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "SEND_TIMEOUT", 0.5)
    path = str(relay_server.config.data_dir / "admin.sock")
    with trio.fail_after(10):
        stream = await trio.open_unix_socket(path)
        await stream.send_all(b'{"id": 1, "method": "status"}\n' * 2000)
        await trio.sleep(2)  # far more answers than the socket buffers hold, none read
        received = 0
        try:
            while data := await stream.receive_some(1 << 20):
                received += len(data)
        except trio.BrokenResourceError:
            pass  # a reset: our unread requests were still in the relay's buffer
        await stream.aclose()
    assert 0 < received < 2000 * len(json.dumps(await _status(path)))
