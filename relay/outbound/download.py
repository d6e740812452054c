"""HTTPS GET of an update manifest or bundle (relay.core.update), streamed with bounded memory.

Certificates are verified against the system trust store (plus an optional CA file); redirects
are followed to https:// URLs only, a few times at most. Every failure is a DownloadError
whose message names the URL and the problem: HTTP status, size, timeout, TLS, connection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import h11
import trio

from relay.outbound.connect import TransportError, client_context, open_connection, start_tls
from relay.outbound.http_client import host_header

IDLE_TIMEOUT = 60.0  # seconds without a byte from the server
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
CHUNK = 64 * 1024


class DownloadError(Exception):
    pass


async def fetch_bytes(url: str, ca_file: str, max_size: int) -> bytes:
    """A small document (the manifest), whole."""
    body = bytearray()

    async def keep(data: bytes) -> None:
        body.extend(data)

    await _get(url, ca_file, max_size, keep, lambda done, total: None)
    return bytes(body)


async def fetch_to_file(
    url: str,
    ca_file: str,
    max_size: int,
    target: Path,
    progress: Callable[[int, int | None], None],
) -> str:
    """Stream `url` into `target`; returns its SHA-256 (hex). `progress(done, total)`.

    Writes go through worker threads: an SD card that stalls must not stall the relay."""
    digest = hashlib.sha256()
    async with await trio.open_file(target, "wb") as f:

        async def write(data: bytes) -> None:
            digest.update(data)
            await f.write(data)

        await _get(url, ca_file, max_size, write, progress)
    return digest.hexdigest()


async def _get(
    url: str,
    ca_file: str,
    max_size: int,
    sink: Callable[[bytes], Awaitable[None]],
    progress: Callable[[int, int | None], None],
) -> None:
    for _ in range(MAX_REDIRECTS + 1):
        location = await _get_once(url, ca_file, max_size, sink, progress)
        if location is None:
            return
        url = urljoin(url, location)
    raise DownloadError(f"{url}: more than {MAX_REDIRECTS} redirects")


async def _get_once(
    url: str,
    ca_file: str,
    max_size: int,
    sink: Callable[[bytes], Awaitable[None]],
    progress: Callable[[int, int | None], None],
) -> str | None:
    """Fetch one URL into sink; a redirect's Location instead, for the caller to follow."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise DownloadError(f"{url}: not an https:// URL")
    host, port = parts.hostname, parts.port or 443
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        stream = await start_tls(
            await open_connection((host,), port), client_context(True, ca_file), host
        )
    except TransportError as e:
        raise DownloadError(f"{url}: {e}") from None
    try:
        conn = h11.Connection(our_role=h11.CLIENT)
        headers = [("Host", host_header(host, port)), ("Connection", "close")]
        await stream.send_all(
            conn.send(h11.Request(method="GET", target=target, headers=headers))
            + conn.send(h11.EndOfMessage())
        )
        done, total = 0, None
        while True:
            with trio.move_on_after(IDLE_TIMEOUT) as idle:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await stream.receive_some(CHUNK)))
                    continue
            if idle.cancelled_caught:
                raise DownloadError(f"{url}: timed out (nothing for {IDLE_TIMEOUT:.0f} s)")
            if isinstance(event, h11.Response):
                fields = {k.lower(): v for k, v in event.headers}
                if event.status_code in REDIRECTS and b"location" in fields:
                    return fields[b"location"].decode("ascii", "replace")
                if event.status_code != 200:
                    raise DownloadError(f"{url}: HTTP {event.status_code} {event.reason.decode()}")
                if b"content-length" in fields:  # h11 checked that it is a number
                    total = int(fields[b"content-length"])
                    if total > max_size:
                        raise DownloadError(f"{url}: {total} bytes is more than {max_size}")
            elif isinstance(event, h11.Data):
                done += len(event.data)
                if done > max_size:
                    raise DownloadError(f"{url}: more than {max_size} bytes")
                await sink(event.data)
                progress(done, total)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                if total is not None and done != total:
                    raise DownloadError(f"{url}: cut off after {done} of {total} bytes")
                return None
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as e:
        raise DownloadError(f"{url}: {e or type(e).__name__}") from None
    finally:
        await trio.aclose_forcefully(stream)
