"""Client for the relay's admin socket (newline-delimited JSON-RPC over a unix socket).

One connection carries both calls and, after `subscribe`, event notifications; a reader task
routes answers to their callers by id and events into a channel.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

CALL_TIMEOUT = 10.0
MAX_LINE = 1 << 20


class AdminError(Exception):
    """The relay answered with an error, or the socket went away."""


class AdminClient:
    def __init__(self, stream: trio.SocketStream, nursery: trio.Nursery) -> None:
        self.stream = stream
        self.ids = itertools.count(1)
        self.waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self.events_send, self.events = trio.open_memory_channel[dict[str, Any]](64)
        self.send_lock = trio.Lock()
        self.closed = False
        nursery.start_soon(self._reader)

    async def _reader(self) -> None:
        buffer = b""
        try:
            while data := await self.stream.receive_some(65536):
                buffer += data
                if len(buffer) > MAX_LINE and b"\n" not in buffer:
                    break
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    await self._dispatch(json.loads(line))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.closed = True
            self.events_send.close()
            for waiter in self.waiting.values():
                waiter.close()

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("method") == "event":
            await self.events_send.send(message.get("params") or {})
            return
        waiter = self.waiting.pop(message.get("id"), None)
        if waiter is not None:
            waiter.send_nowait(message)

    async def call(self, method: str, **params: Any) -> Any:
        if self.closed:
            raise AdminError("admin connection closed")
        rid = next(self.ids)
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self.waiting[rid] = send
        line = json.dumps({"id": rid, "method": method, "params": params}).encode() + b"\n"
        try:
            async with self.send_lock:
                await self.stream.send_all(line)
            with trio.fail_after(CALL_TIMEOUT):
                reply = await receive.receive()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel) as e:
            raise AdminError(f"{method}: admin connection lost") from e
        finally:
            self.waiting.pop(rid, None)
        if "error" in reply:
            raise AdminError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result")


@asynccontextmanager
async def connect(path: Path) -> AsyncIterator[AdminClient]:
    try:
        stream = await trio.open_unix_socket(str(path))
    except OSError as e:
        raise AdminError(f"relay admin socket {path}: {e.strerror or e}") from e
    async with stream, trio.open_nursery() as nursery:
        yield AdminClient(stream, nursery)
        nursery.cancel_scope.cancel()
