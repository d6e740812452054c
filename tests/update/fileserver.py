"""An HTTPS file server on loopback with a scratch CA: serves `files` (path -> bytes) and
answers 404 for anything else; records each requested path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h11
import trio

from tests.federation.pki import ScratchCA


@dataclass
class FileServer:
    directory: Path
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.ca = ScratchCA(self.directory)
        self.context = self.ca.server_context(["localhost"])

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_ssl_over_tcp_listeners(0, self.context, host="127.0.0.1")
        self.port = listeners[0].transport_listener.socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SSLStream) -> None:
        conn = h11.Connection(our_role=h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await stream.receive_some(65536)))
                elif isinstance(event, h11.Request):
                    target = event.target.decode()
                    self.requests.append(target)
                    body = self.files.get(target)
                    status = 200 if body is not None else 404
                    body = body if body is not None else b"not found\n"
                    head = [("Content-Length", str(len(body))), ("Connection", "close")]
                    await stream.send_all(conn.send(h11.Response(status_code=status, headers=head)))
                    for start in range(0, len(body), 65536):
                        await stream.send_all(conn.send(h11.Data(data=body[start : start + 65536])))
                    await stream.send_all(conn.send(h11.EndOfMessage()))
                    return
                else:
                    return
        except (trio.BrokenResourceError, h11.ProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(stream)
