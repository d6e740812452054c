"""shadowsocks-libev's ss-local (Debian) as an independent Shadowsocks client: it runs as a SOCKS5
front on loopback, and the tests speak SOCKS5 to it (written here: a CONNECT is a few bytes)."""

from __future__ import annotations

import contextlib
import imaplib
import ipaddress
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator

from tests.helpers import free_ports, require_tool, wait_for_port

HOST = "127.0.0.1"


@contextlib.contextmanager
def ss_local(server_port: int, password: str, cipher: str) -> Iterator[int]:
    """ss-local towards 127.0.0.1:`server_port`; yields its SOCKS5 port."""
    binary = require_tool("ss-local")
    (socks_port,) = free_ports(1)
    process = subprocess.Popen(
        [binary, "-s", HOST, "-p", str(server_port), "-b", HOST, "-l", str(socks_port),
         "-k", password, "-m", cipher, "-t", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(HOST, socks_port)
        yield socks_port
    finally:
        process.terminate()
        process.wait(10)


def _exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise ConnectionError("SOCKS5 proxy closed the connection")
        data += more
    return data


def socks_connect(socks_port: int, host: str, port: int, timeout: float = 20) -> socket.socket:
    """A socket through the SOCKS5 proxy to host:port (no authentication, CONNECT)."""
    sock = socket.create_connection((HOST, socks_port), timeout=timeout)
    sock.sendall(b"\x05\x01\x00")
    assert _exactly(sock, 2) == b"\x05\x00"
    try:
        ip = ipaddress.ip_address(host)
        address = bytes([1 if ip.version == 4 else 4]) + ip.packed
    except ValueError:
        address = bytes([3, len(host)]) + host.encode()
    sock.sendall(b"\x05\x01\x00" + address + port.to_bytes(2, "big"))
    reply = _exactly(sock, 4)
    assert reply[1] == 0, f"SOCKS5 CONNECT refused: {reply!r}"
    kind = reply[3]
    _exactly(sock, (4 if kind == 1 else 16 if kind == 4 else _exactly(sock, 1)[0]) + 2)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the other side closes (the socket's timeout bounds each read)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while more := sock.recv(4096):
            data += more
    return data


class IMAP4ViaSocks(imaplib.IMAP4_SSL):
    def __init__(self, connect: Callable[[], socket.socket], context: ssl.SSLContext) -> None:
        self._open_socks = connect
        super().__init__(HOST, 0, ssl_context=context, timeout=20)

    def _create_socket(self, timeout: float | None) -> ssl.SSLSocket:  # type: ignore[override]
        return self.ssl_context.wrap_socket(self._open_socks(), server_hostname=HOST)


class SMTPViaSocks(smtplib.SMTP_SSL):
    def __init__(self, connect: Callable[[], socket.socket], context: ssl.SSLContext) -> None:
        self._open_socks = connect
        super().__init__(HOST, 0, context=context, timeout=20)

    def _get_socket(self, host: str, port: int, timeout: float) -> ssl.SSLSocket:  # type: ignore[override]
        return self.context.wrap_socket(self._open_socks(), server_hostname=host)
