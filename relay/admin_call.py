"""A blocking client of the running relay's admin socket, for the `relay` command (config,
queue, status, admin-token); hwctl has its own trio client (hwctl/admin_client.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

ADMIN_SOCKET = "admin.sock"
TIMEOUT = 30.0


class NotRunning(Exception):
    """No relay answers on the admin socket of this data dir."""


class Refused(Exception):
    """The relay answered with an error (its JSON-RPC code and message)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def call(data_dir: Path, method: str, params: dict[str, Any] | None = None, *,
         timeout: float = TIMEOUT) -> Any:  # fmt: skip
    """The result of one request; OSError or ValueError when the answer is unusable."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(Path(data_dir) / ADMIN_SOCKET))
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        sock.close()
        raise NotRunning(f"no relay runs with the data in {data_dir}") from None
    except OSError:
        sock.close()
        raise  # PermissionError: the socket is the relay user's (mode 0600)
    with sock, sock.makefile("rwb") as f:
        request = {"id": 1, "method": method, "params": params or {}}
        f.write(json.dumps(request).encode() + b"\n")
        f.flush()
        answer = json.loads(f.readline() or b"{}")
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    error = answer.get("error")
    if error is not None:
        if isinstance(error, dict):
            raise Refused(int(error.get("code", 0)), str(error.get("message", error)))
        raise Refused(0, str(error))
    return answer.get("result")
