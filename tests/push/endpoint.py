"""A stand-in for the Delta Chat notification proxy: HTTPS on loopback with a scratch CA,
recording every POST and answering what the test says (200, 410, 500, or hanging)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h11
import trio

from tests.federation.pki import ScratchCA


@dataclass
class Post:
    target: str
    headers: dict[bytes, bytes]
    body: bytes
    at: float  # time.perf_counter() when the body was complete


@dataclass
class Endpoint:
    directory: Path
    answer: Callable[[bytes], int | None] = lambda body: 200  # None: never answer
    posts: list[Post] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self.ca = ScratchCA(self.directory)
        self.context = self.ca.server_context(["localhost"])
        self.arrived = trio.Condition()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}/notify"

    def bodies(self) -> list[bytes]:
        return [p.body for p in self.posts]

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        with trio.fail_after(timeout):
            async with self.arrived:
                while len(self.posts) < count:
                    await self.arrived.wait()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_ssl_over_tcp_listeners(0, self.context, host="127.0.0.1")
        self.port = listeners[0].transport_listener.socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SSLStream) -> None:
        self.connections += 1
        conn = h11.Connection(our_role=h11.SERVER)
        try:
            while True:
                request, body = None, bytearray()
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        conn.receive_data(bytes(data))
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert request is not None
                self.posts.append(
                    Post(request.target.decode(), dict(request.headers), bytes(body),
                         time.perf_counter())
                )  # fmt: skip
                async with self.arrived:
                    self.arrived.notify_all()
                status = self.answer(bytes(body))
                if status is None:
                    await trio.sleep_forever()
                response = h11.Response(status_code=status, headers=[("Content-Length", "2")])
                await stream.send_all(
                    conn.send(response) + conn.send(h11.Data(data=b"ok"))
                    + conn.send(h11.EndOfMessage())
                )  # fmt: skip
                conn.start_next_cycle()
        except (trio.BrokenResourceError, h11.ProtocolError):
            return
        finally:
            await trio.aclose_forcefully(stream)


class ThreadedEndpoint:
    """The endpoint in a thread of its own, for tests that are not trio tasks (tests/e2e)."""

    def __init__(self, directory: Path) -> None:
        self.endpoint = Endpoint(directory)
        self._token: trio.lowlevel.TrioToken | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Endpoint:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the push endpoint did not start")
        return self.endpoint

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        self._thread.join(10)

    def _run(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as self._cancel:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.endpoint.serve)
                    self._started.set()

        trio.run(main)

    def wait_for(self, count: int, timeout: float = 60) -> list[Post]:
        deadline = time.monotonic() + timeout
        while len(self.endpoint.posts) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.endpoint.posts)} of {count} POSTs arrived")
            time.sleep(0.05)
        return self.endpoint.posts
