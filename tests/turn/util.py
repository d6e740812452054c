"""For the TURN tests: a relay config with the built-in TURN server on a free UDP port, and the
minted METADATA value read over IMAP."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from relay.config import Config, Turn
from tests.helpers import make_config
from tests.imap.util import PASSWORD, RawClient, new_addr


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def stun_answers(port: int) -> bool:
    """A STUN binding request to the TURN port gets an answer (RFC 8489 header)."""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"transaction!"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(request, ("127.0.0.1", port))
        try:
            answer = sock.recv(2048)
        except (TimeoutError, ConnectionRefusedError):
            return False
    return answer[:2] == b"\x01\x01" and answer[8:20] == b"transaction!"


def turn_config(data_dir: Path, **turn: object) -> Config:
    config = make_config(data_dir)
    settings = {"port": free_udp_port(), "allow_loopback_peers": True} | turn
    return dataclasses.replace(config, turn=Turn(**settings))  # type: ignore[arg-type]


async def read_turn_metadata(relay) -> bytes | None:
    client = await RawClient.connect(relay)
    await client.read_line()
    await client.command(f"x LOGIN {new_addr(relay)} {PASSWORD}\r\n".encode())
    lines = await client.command(b'a GETMETADATA "" /shared/vendor/deltachat/turn\r\n')
    await client.aclose()
    assert lines[-1].startswith(b"a OK"), lines
    if b"turn NIL" in lines[0]:
        return None
    return lines[0].split(b"}\r\n", 1)[1].rsplit(b")", 1)[0]
