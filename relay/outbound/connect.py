"""Connections to peers: TCP to the first address that answers, and the client TLS rules.

TLS to peers is always required and certificates are verified against the exchanger's name,
except for domain literals and for domains starting with "_", which run self-signed
certificates by design (the official relay's rule).
"""

from __future__ import annotations

import ssl
from functools import lru_cache

import trio

CONNECT_TIMEOUT = 20.0


class TransportError(Exception):
    """The peer could not be reached or broke the conversation: try the next exchanger."""


def verifies_certificates(domain: str) -> bool:
    return not (domain.startswith("[") or domain.startswith("_"))


@lru_cache(maxsize=8)
def client_context(verify: bool, ca_file: str = "") -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def open_connection(addresses: tuple[str, ...], port: int) -> trio.SocketStream:
    """The first address that accepts a TCP connection, within CONNECT_TIMEOUT each."""
    errors = []
    for address in addresses:
        with trio.move_on_after(CONNECT_TIMEOUT):
            try:
                return await trio.open_tcp_stream(address, port)
            except OSError as e:
                errors.append(f"{address}:{port}: {e.strerror or e}")
                continue
        errors.append(f"{address}:{port}: connect timed out")
    raise TransportError("; ".join(errors) or "no address")


async def start_tls(
    stream: trio.abc.Stream, ctx: ssl.SSLContext, server_hostname: str
) -> trio.SSLStream:
    tls = trio.SSLStream(stream, ctx, server_hostname=server_hostname, https_compatible=True)
    try:
        await tls.do_handshake()
    except (trio.BrokenResourceError, ssl.SSLError) as e:
        raise TransportError(f"TLS handshake with {server_hostname} failed: {_cause(e)}") from None
    return tls


def _cause(e: BaseException) -> str:
    inner = e.__cause__ or e.__context__
    return str(inner or e)
