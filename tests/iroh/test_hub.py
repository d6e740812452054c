"""The iroh hub without a network: queues, rate limits, no-log, the disabled relay."""

from __future__ import annotations

import io
import time

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.config import Iroh
from relay.iroh import frames
from relay.iroh.relay import QUEUE_DEPTH, Hub, _Bucket, _Client
from relay.log import Logger
from tests.helpers import make_config
from tests.web.client import raw_exchange


def test_full_queue_drops_and_counts_without_blocking():
    hub = Hub()
    send, _receive = trio.open_memory_channel[bytes](QUEUE_DEPTH)
    src = _Client(b"a" * 32, "1.2.3.4", trio.open_memory_channel[bytes](1)[0], trio.CancelScope())
    hub.clients[b"b" * 32] = _Client(b"b" * 32, "1.2.3.5", send, trio.CancelScope())
    for _ in range(QUEUE_DEPTH + 10):
        hub.forward(src, b"b" * 32, b"x")
    assert hub.stats.frames_relayed == QUEUE_DEPTH
    assert hub.stats.dropped_queue_full == 10
    hub.forward(src, b"c" * 32, b"x")
    assert hub.stats.dropped_no_peer == 1


def test_bucket_asks_to_wait_beyond_its_rate():
    bucket = _Bucket(1000, 2000)
    assert bucket.take(2000) == 0
    assert bucket.take(500) == pytest.approx(0.5, abs=0.05)


async def test_frame_rate_limit_slows_reading():
    hub = Hub()
    client_side, server_side = trio.testing.memory_stream_pair()
    config = Iroh(frames_per_second=20)
    log = Logger(level="warning")
    key = Ed25519PrivateKey.generate()
    pings = b"".join(frames.encode(frames.PING, b"%08d" % i) for i in range(60))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.serve_client, server_side, b"", "10.0.0.1", config, log)
        await client_side.send_all(frames.client_info(key) + pings)
        decoder = frames.Decoder()
        pongs = 0
        started = time.monotonic()
        with trio.fail_after(10):
            while pongs < 60:
                decoder.feed(await client_side.receive_some(65536))
                while (frame := decoder.next_frame()) is not None:
                    pongs += frame.type == frames.PONG
        # a burst of 40 (2 s), then 20 per second: the last 20 take about a second
        assert time.monotonic() - started > 0.8
        nursery.cancel_scope.cancel()


async def test_no_log_mode_logs_no_ip_or_key():
    hub = Hub()
    out = io.StringIO()
    log = Logger(no_log=True, stream=out, level="debug")
    client_side, server_side = trio.testing.memory_stream_pair()
    key = Ed25519PrivateKey.generate()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.serve_client, server_side, b"", "10.9.8.7", Iroh(), log)
        await client_side.send_all(frames.client_info(key))
        with trio.fail_after(5):
            while not hub.clients:
                await trio.sleep(0.01)
        await client_side.send_all(frames.HEADER.pack(frames.SEND_PACKET, 1 << 30))
        with trio.fail_after(5):
            while hub.clients:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    public = frames.parse_client_info(_first(key)).key
    text = out.getvalue()
    assert "iroh-frame-error" in text and "iroh-client" in text
    assert "10.9.8.7" not in text and public.hex()[:16] not in text


def _first(key: Ed25519PrivateKey) -> frames.Frame:
    decoder = frames.Decoder()
    decoder.feed(frames.client_info(key))
    frame = decoder.next_frame()
    assert frame is not None
    return frame


@pytest.fixture
def relay_config(tmp_path):
    return make_config(tmp_path / "data", iroh=Iroh(enabled=False))


async def test_disabled_relay_answers_404_and_no_upgrade(relay_server):
    port = relay_server.config.listen.http
    raw = await raw_exchange(
        "127.0.0.1",
        port,
        b"GET /relay HTTP/1.1\r\nHost: x\r\nUpgrade: iroh derp http\r\nConnection: close\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 404 ")
    raw = await raw_exchange(
        "127.0.0.1", port, b"GET /generate_204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 404 ")
    assert "iroh" not in relay_server.app.services.ports


async def test_keep_alive_pings_and_idle_timeout(monkeypatch, autojump_clock):
    # In-memory streams and trio's virtual clock: the idle timeout is measured exactly, however
    # busy the machine.
    from relay.iroh import relay as relay_mod

    monkeypatch.setattr(relay_mod, "KEEP_ALIVE", 0.1)
    hub = Hub()
    client_side, server_side = trio.testing.memory_stream_pair()
    done = trio.Event()

    async def serve() -> None:
        await hub.serve_client(
            server_side, b"", "10.0.0.2", Iroh(idle_timeout=1), Logger(level="warning")
        )
        done.set()

    async with trio.open_nursery() as nursery:
        started = trio.current_time()
        nursery.start_soon(serve)
        await client_side.send_all(frames.client_info(Ed25519PrivateKey.generate()))
        decoder = frames.Decoder()
        with trio.fail_after(5):
            frame = None
            while frame is None:
                decoder.feed(await client_side.receive_some(65536))
                frame = decoder.next_frame()
        assert frame.type == frames.PING and len(frame.payload) == 8
        assert trio.current_time() - started == pytest.approx(0.1)  # KEEP_ALIVE
        with trio.fail_after(5):  # the client sends nothing: dropped after the idle timeout
            await done.wait()
        assert trio.current_time() - started == pytest.approx(1.0)  # Iroh(idle_timeout=1)
        assert not hub.clients and not hub.per_ip
