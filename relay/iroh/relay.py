"""The iroh relay itself: one `Hub` per relay process, one `serve_client()` per upgraded
connection. Packets are forwarded by node key; every client has a bounded send queue (a slow
reader loses packets, it never holds up the sender), a byte and frame rate limit on what it
sends, a keep-alive Ping every 15 s and an idle timeout. A second connection with the same key
replaces the first. When a client leaves, the peers it sent to get PeerGone.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from relay.iroh import frames
from relay.iroh.frames import FrameError

if TYPE_CHECKING:
    from relay.config import Iroh
    from relay.log import Logger

QUEUE_DEPTH = 512  # upstream PER_CLIENT_SEND_QUEUE_DEPTH
HANDSHAKE_TIMEOUT = 10.0
KEEP_ALIVE = 15.0
SEND_TIMEOUT = 30.0
RECEIVE_SIZE = 64 * 1024


class _Bucket:
    """A token bucket: `rate` per second, up to `burst`; `take()` says how long to wait."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self, amount: float) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass(eq=False)
class _Client:
    key: bytes
    ip: str
    send: trio.MemorySendChannel[bytes]
    scope: trio.CancelScope
    sent_to: set[bytes] = field(default_factory=set)


@dataclass
class Stats:
    connections: int = 0  # upgraded connections since start
    frames_relayed: int = 0  # RecvPackets queued for a connected destination
    bytes_relayed: int = 0
    dropped_no_peer: int = 0
    dropped_queue_full: int = 0
    refused: int = 0  # bad handshake, over the per-IP cap


class Hub:
    def __init__(self) -> None:
        self.clients: dict[bytes, _Client] = {}
        self.per_ip: Counter[str] = Counter()
        self.stats = Stats()

    def status(self) -> dict[str, int]:
        return {"clients": len(self.clients), **self.stats.__dict__}

    def forward(self, src: _Client, dst: bytes, data: bytes) -> None:
        target = self.clients.get(dst)
        if target is None:
            self.stats.dropped_no_peer += 1
            return
        try:
            target.send.send_nowait(frames.recv_packet(src.key, data))
        except trio.WouldBlock:
            self.stats.dropped_queue_full += 1
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        src.sent_to.add(dst)
        self.stats.frames_relayed += 1
        self.stats.bytes_relayed += len(data)

    def _register(self, client: _Client) -> None:
        old = self.clients.get(client.key)
        if old is not None:
            self._unregister(old, notify=False)
            old.scope.cancel()
        self.clients[client.key] = client

    def _unregister(self, client: _Client, *, notify: bool = True) -> None:
        if self.clients.get(client.key) is not client:
            return
        del self.clients[client.key]
        if not notify:
            return
        for key in client.sent_to:
            peer = self.clients.get(key)
            if peer is not None:
                with contextlib.suppress(
                    trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
                ):
                    peer.send.send_nowait(frames.peer_gone(client.key))

    async def serve_client(
        self,
        stream: trio.abc.Stream,
        initial: bytes,
        ip: str,
        config: Iroh,
        log: Logger,
    ) -> None:
        """Run one relay connection after the 101 (`initial`: bytes that came with the head)."""
        if self.per_ip[ip] >= config.max_connections_per_ip:
            self.stats.refused += 1
            await _send_quietly(stream, frames.health("too many connections from your address"))
            return
        self.per_ip[ip] += 1
        try:
            await self._serve(stream, initial, ip, config, log)
        finally:
            self.per_ip[ip] -= 1
            if not self.per_ip[ip]:
                del self.per_ip[ip]

    async def _serve(
        self, stream: trio.abc.Stream, initial: bytes, ip: str, config: Iroh, log: Logger
    ) -> None:
        decoder = frames.Decoder()
        decoder.feed(initial)
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                first = await _next_frame(stream, decoder)
            if first is None:
                return
            info = frames.parse_client_info(first)
        except (FrameError, trio.TooSlowError) as e:
            self.stats.refused += 1
            log.info("iroh-handshake-failed", error=str(e), ip=log.redact(ip))
            await _send_quietly(stream, frames.health("not authenticated"))
            return
        self.stats.connections += 1
        send, receive = trio.open_memory_channel[bytes](QUEUE_DEPTH)
        async with trio.open_nursery() as nursery:
            client = _Client(info.key, ip, send, nursery.cancel_scope)
            self._register(client)
            log.debug("iroh-client", node=log.redact(info.key.hex()[:16]), ip=log.redact(ip))
            try:
                nursery.start_soon(_writer, stream, receive, nursery.cancel_scope)
                nursery.start_soon(_keep_alive, send)
                await self._reader(stream, decoder, client, config, log)
            finally:
                self._unregister(client)
                nursery.cancel_scope.cancel()

    async def _reader(
        self,
        stream: trio.abc.Stream,
        decoder: frames.Decoder,
        client: _Client,
        config: Iroh,
        log: Logger,
    ) -> None:
        byte_rate = _Bucket(config.bytes_per_second, config.bytes_per_second * 2)
        frame_rate = _Bucket(config.frames_per_second, config.frames_per_second * 2)
        while True:
            try:
                with trio.fail_after(config.idle_timeout):
                    frame = await _next_frame(stream, decoder)
            except trio.TooSlowError:
                return
            except FrameError as e:
                log.info("iroh-frame-error", error=str(e), ip=log.redact(client.ip))
                return
            if frame is None:
                return
            # Reading slows down to the rate limit (TCP pushes back to the sender), as upstream.
            wait = max(byte_rate.take(len(frame.payload) + frames.HEADER.size), frame_rate.take(1))
            if wait:
                await trio.sleep(wait)
            if frame.type == frames.SEND_PACKET:
                try:
                    dst, data = frames.split_packet(frame)
                except FrameError as e:
                    log.info("iroh-frame-error", error=str(e), ip=log.redact(client.ip))
                    return
                self.forward(client, dst, data)
            elif frame.type == frames.PING:
                if len(frame.payload) != 8:
                    return
                with contextlib.suppress(trio.WouldBlock):
                    client.send.send_nowait(frames.encode(frames.PONG, frame.payload))
            # Pong, KeepAlive, NotePreferred need nothing; unknown types are skipped, so a
            # newer client's extra frames do not end the connection.


async def _next_frame(stream: trio.abc.Stream, decoder: frames.Decoder) -> frames.Frame | None:
    """The next whole frame, or None at a clean end of stream (FrameError when cut off)."""
    while True:
        frame = decoder.next_frame()
        if frame is not None:
            return frame
        try:
            data = await stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            if decoder.pending:
                raise FrameError("connection closed inside a frame")
            return None
        decoder.feed(bytes(data))


async def _writer(
    stream: trio.abc.Stream, receive: trio.MemoryReceiveChannel[bytes], scope: trio.CancelScope
) -> None:
    """Send queued frames, as many at once as are waiting; a stuck reader is dropped."""
    try:
        async for first in receive:
            batch = [first]
            while len(batch) < 64:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            with trio.fail_after(SEND_TIMEOUT):
                await stream.send_all(b"".join(batch))
    except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


async def _keep_alive(send: trio.MemorySendChannel[bytes]) -> None:
    while True:
        await trio.sleep(KEEP_ALIVE)
        with contextlib.suppress(trio.WouldBlock):
            send.send_nowait(frames.encode(frames.PING, os.urandom(8)))


async def _send_quietly(stream: trio.abc.Stream, data: bytes) -> None:
    with trio.move_on_after(5):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(data)
