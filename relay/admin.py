"""The local admin socket: newline-delimited JSON-RPC over a unix socket (mode 0600).

hwctl (display, LEDs, button) and the `relay` CLI talk to the running relay through this
socket. Requests are one JSON object per line, `{"id": 1, "method": "status", "params": {}}`;
answers carry the same id and either "result" or "error". The methods are the admin method
table's (relay/core/admin/table.py), which `POST /api/admin` serves too: by their socket name
(status, overview, reload, queue, new_onboarding, factory_reset, identity_export,
identity_import, ...) or, for any operation, `admin` with params `{"method", "resource",
"body"}` as madmail's envelope. After `subscribe`, the connection also receives notifications
`{"method": "event", "params": {"type": "account_created", ...}}`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import trio

from relay.app import App
from relay.core.admin import table
from relay.core.admin.errors import AdminError

MAX_LINE = 16 << 20  # an identity import carries every account (about 150 bytes each)
MAX_CONNECTIONS = 16
SEND_TIMEOUT = 10.0  # a client that stops reading its answers or events is dropped
# JSON-RPC error codes for the table's statuses
RPC_CODES = {400: -32602, 404: -32601, 405: -32601}


class RestartRequested(Exception):
    """Raised out of serve_admin after a factory reset or an identity restore: restart the relay.

    The wipe happens at the next start (apply_pending_factory_reset), before the store opens.
    """


async def relay_store_events(app: App) -> None:
    """Turn the store's account events into admin events with onboarding context."""
    with app.events.subscribe() as events:
        async for event in events:
            if event["type"] == "account_created":
                await account_created(app, event["addr"])


async def account_created(app: App, addr: str) -> None:
    pending = app.admin.pending
    onboarded = addr in pending
    if onboarded:
        pending.remove(addr)
    try:
        accounts: int | None = await app.store.account_count()
    except Exception as e:  # a login must never fail because of this notification
        app.log.exception("admin-account-count-failed", e)
        accounts = None
    app.log.info("account-created", addr=app.log.redact(addr), accounts=accounts)
    app.admin.hub.publish(
        {"type": "account_created", "addr": addr, "onboarding": onboarded, "accounts": accounts}
    )


async def call(app: App, method: str, params: dict[str, Any]) -> Any:
    """One socket request: a table operation by its socket name, or `admin` with an envelope."""
    if method == "admin":
        op, args = table.find(
            str(params.get("method", "GET")).upper(), str(params.get("resource", "")), local=True
        )
        return await table.call(app, op, args, params.get("body"))
    named = table.BY_NAME.get(method)
    if named is None:
        raise AdminError(404, f"unknown method {method!r}")
    return await table.call(app, named, [], params)


async def serve_admin(
    app: App, path: Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the admin socket at `path` until cancelled; raises RestartRequested after a reset."""
    listener = await _bind_private(path)
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
    try:
        async with trio.open_nursery() as nursery:

            async def accept_loop() -> None:
                while True:
                    sock, _ = await listener.accept()
                    nursery.start_soon(_connection, app, trio.SocketStream(sock), limiter)

            nursery.start_soon(accept_loop)
            nursery.start_soon(relay_store_events, app)
            task_status.started()
            await app.admin.restart_requested.wait()
            # Give the client the answer and subscribers the event before going down.
            await trio.sleep(0.2)
            raise RestartRequested("a factory reset or a restored identity needs a restart")
    finally:
        listener.close()
        path.unlink(missing_ok=True)


async def _bind_private(path: Path) -> trio.socket.SocketType:
    """Bind under a temporary name, restrict it to the owner, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(tmp))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    sock.listen(MAX_CONNECTIONS)
    return sock


async def _connection(app: App, stream: trio.SocketStream, limiter) -> None:
    send_lock = trio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with send_lock:
            with trio.fail_after(SEND_TIMEOUT):
                await stream.send_all(json.dumps(message).encode() + b"\n")

    async def forward(events: trio.MemoryReceiveChannel[dict[str, Any]]) -> None:
        async with events:
            async for event in events:
                await send({"method": "event", "params": event})

    try:
        async with limiter, stream, trio.open_nursery() as nursery:
            buffer = b""
            while True:
                data = await stream.receive_some(4096)
                if not data:
                    break
                buffer += data
                if len(buffer) > MAX_LINE and b"\n" not in buffer:
                    await send(_error(None, -32600, "request too long"))
                    break
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        reply = await _answer(app, line, nursery, forward)
                        await send(reply)
            nursery.cancel_scope.cancel()
    except* (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        # The client went away or stopped reading. The nursery wraps this in a group, which
        # a plain except would miss, and it would end serve_admin and with it the relay.
        pass


async def _answer(app: App, line: bytes, nursery, forward) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except ValueError:
        return _error(None, -32700, "not JSON")
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        return _error(None, -32600, "expected an object with a method")
    rid = request.get("id")
    params = request.get("params") or {}
    try:
        if request["method"] == "subscribe":
            nursery.start_soon(forward, app.admin.hub.subscribe())
            return {"id": rid, "result": {"subscribed": True}}
        if not isinstance(params, dict):
            raise AdminError(400, "params must be an object")
        return {"id": rid, "result": await call(app, request["method"], params)}
    except AdminError as e:
        return _error(rid, RPC_CODES.get(e.status, -32000 - e.status), str(e))
    except Exception as e:
        app.log.exception("admin-call-failed", e, method=request["method"])
        return _error(rid, -32603, "internal error")


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"id": rid, "error": {"code": code, "message": message}}
