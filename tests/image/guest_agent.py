"""A small client for the QEMU guest agent: run commands inside the twin, read their output.

The agent speaks line-delimited JSON over a unix socket (qemu-ga's virtio port).
"""

from __future__ import annotations

import base64
import json
import socket
import time
from dataclasses import dataclass


class AgentError(Exception):
    pass


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


class GuestAgent:
    def __init__(self, path: str, *, timeout: float = 30.0):
        self.path = path
        self.timeout = timeout

    def _call(self, command: str, arguments: dict | None = None) -> object:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            buf = sock.makefile("rwb")
            # guest-sync flushes whatever a previous, interrupted client left in the channel.
            token = int(time.monotonic() * 1000) % 2**31
            self._send(buf, "guest-sync", {"id": token})
            while self._receive(buf).get("return") != token:
                pass
            self._send(buf, command, arguments)
            reply = self._receive(buf)
        if "error" in reply:
            raise AgentError(f"{command}: {reply['error']}")
        return reply.get("return")

    @staticmethod
    def _send(buf, command: str, arguments: dict | None) -> None:
        message = {"execute": command}
        if arguments is not None:
            message["arguments"] = arguments
        buf.write(json.dumps(message).encode() + b"\n")
        buf.flush()

    @staticmethod
    def _receive(buf) -> dict:
        line = buf.readline()
        if not line:
            raise AgentError("guest agent closed the connection")
        return json.loads(line)

    def ping(self) -> bool:
        try:
            self._call("guest-ping")
        except (OSError, AgentError, ValueError):
            return False
        return True

    def run(self, script: str, *, timeout: float = 60.0) -> Completed:
        """Run a shell script in the guest as root and wait (bounded) for it to finish."""
        started = self._call(
            "guest-exec",
            {"path": "/bin/sh", "arg": ["-c", script], "capture-output": True},
        )
        pid = started["pid"]  # type: ignore[index]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self._call("guest-exec-status", {"pid": pid})
            if status["exited"]:  # type: ignore[index]
                return Completed(
                    returncode=status.get("exitcode", -1),  # type: ignore[union-attr]
                    stdout=_decode(status.get("out-data")),  # type: ignore[union-attr]
                    stderr=_decode(status.get("err-data")),  # type: ignore[union-attr]
                )
            time.sleep(0.2)
        raise AgentError(f"guest command did not finish in {timeout}s: {script}")


def _decode(data: str | None) -> str:
    return base64.b64decode(data).decode(errors="replace") if data else ""
