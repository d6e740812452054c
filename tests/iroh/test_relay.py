"""The built-in iroh relay on a real relay: the HTTP upgrade, forwarding by node key, Ping/Pong,
PeerGone, replacement of a duplicate key, refusals, the probes, and METADATA irohrelay."""

from __future__ import annotations

import dataclasses

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.config import Iroh, Metadata
from relay.iroh import frames
from relay.iroh.where import relay_url
from tests.helpers import client_context, free_ports, make_config, serving
from tests.iroh.client import RelayClient
from tests.web.client import raw_exchange


@pytest.fixture
def relay_config(tmp_path):
    (port,) = free_ports(1)
    return make_config(tmp_path / "data", iroh=Iroh(port=port))


def port_of(relay_server) -> int:
    return relay_server.app.services.ports["iroh"]


async def connect(relay_server, key=None, **kwargs) -> RelayClient:
    return await RelayClient.connect("127.0.0.1", port_of(relay_server), key, **kwargs)


async def test_upgrade_answers_101_and_forwards_by_node_key(relay_server):
    a, b = await connect(relay_server), await connect(relay_server)
    assert a.head.startswith("HTTP/1.1 101 ")
    assert "upgrade: iroh derp http" in a.head.lower()
    with trio.fail_after(5):
        while len(relay_server.app.iroh.clients) < 2:
            await trio.sleep(0.01)
        await a.send_to(b.public, b"hello b")
        frame = await b.frame()
    assert frame == frames.Frame(frames.RECV_PACKET, a.public + b"hello b")
    assert relay_server.app.iroh.stats.frames_relayed == 1
    status = relay_server.app.iroh.status()
    assert status["clients"] == 2 and status["bytes_relayed"] == 7


async def test_legacy_derp_path_and_https_listener(relay_server):
    tcp = await trio.open_tcp_stream("127.0.0.1", relay_server.config.listen.https)
    tls = trio.SSLStream(tcp, client_context(relay_server.config), server_hostname="127.0.0.1")
    a = await RelayClient.connect("127.0.0.1", 0, path="/derp", stream=tls)
    b = await connect(relay_server)
    with trio.fail_after(5):
        while len(relay_server.app.iroh.clients) < 2:
            await trio.sleep(0.01)
        await b.send_to(a.public, b"over tls")
        assert await a.frame() == frames.Frame(frames.RECV_PACKET, b.public + b"over tls")


async def test_ping_is_answered_with_pong(relay_server):
    a = await connect(relay_server)
    await a.send_raw(frames.encode(frames.PING, b"01234567"))
    with trio.fail_after(5):
        assert await a.frame() == frames.Frame(frames.PONG, b"01234567")


async def test_unknown_frames_are_skipped(relay_server):
    a = await connect(relay_server)
    await a.send_raw(frames.encode(200, b"from the future") + frames.encode(frames.PING, b"x" * 8))
    with trio.fail_after(5):
        assert await a.frame() == frames.Frame(frames.PONG, b"x" * 8)


async def test_packet_to_an_absent_peer_is_dropped(relay_server):
    a = await connect(relay_server)
    await a.send_to(b"\1" * 32, b"nobody")
    await a.send_raw(frames.encode(frames.PING, b"y" * 8))
    with trio.fail_after(5):
        assert await a.frame() == frames.Frame(frames.PONG, b"y" * 8)
    assert relay_server.app.iroh.stats.dropped_no_peer == 1


async def test_peer_gone_after_a_client_leaves(relay_server):
    a, b = await connect(relay_server), await connect(relay_server)
    with trio.fail_after(5):
        while len(relay_server.app.iroh.clients) < 2:
            await trio.sleep(0.01)
        await a.send_to(b.public, b"hi")
        assert (await b.frame()).type == frames.RECV_PACKET
        await a.aclose()
        assert await b.frame() == frames.Frame(frames.PEER_GONE, a.public)


async def test_second_connection_with_the_same_key_replaces_the_first(relay_server):
    key = Ed25519PrivateKey.generate()
    first = await connect(relay_server, key)
    with trio.fail_after(5):
        while not relay_server.app.iroh.clients:
            await trio.sleep(0.01)
        second = await connect(relay_server, key)
        assert await first.frame() is None  # closed by the relay
        other = await connect(relay_server)
        while len(relay_server.app.iroh.clients) < 2:
            await trio.sleep(0.01)
        await other.send_to(second.public, b"to the new one")
        assert await second.frame() == frames.Frame(
            frames.RECV_PACKET, other.public + b"to the new one"
        )


async def test_bad_signature_gets_health_not_authenticated(relay_server):
    a = await connect(relay_server, handshake=False)
    good = frames.client_info(Ed25519PrivateKey.generate())
    forged = good[:-2] + bytes([good[-2] ^ 1]) + good[-1:]  # a flipped signature bit
    await a.send_raw(forged)
    with trio.fail_after(5):
        assert await a.frame() == frames.Frame(frames.HEALTH, b"not authenticated")
        assert await a.frame() is None
    assert not relay_server.app.iroh.clients


async def test_oversize_frame_ends_the_connection(relay_server):
    a = await connect(relay_server)
    await a.send_raw(frames.HEADER.pack(frames.SEND_PACKET, frames.MAX_FRAME_SIZE + 1))
    with trio.fail_after(5):
        assert await a.frame() is None


async def test_connections_per_ip_are_capped(tmp_path):
    (port,) = free_ports(1)
    config = make_config(tmp_path / "data", iroh=Iroh(port=port, max_connections_per_ip=2))
    async with serving(config) as relay:
        keep = [await RelayClient.connect("127.0.0.1", port) for _ in range(2)]
        with trio.fail_after(5):
            while len(relay.app.iroh.clients) < 2:
                await trio.sleep(0.01)
            third = await RelayClient.connect("127.0.0.1", port)
            assert (await third.frame()).type == frames.HEALTH
        assert keep


async def test_probes(relay_server):
    port = port_of(relay_server)
    raw = await raw_exchange(
        "127.0.0.1",
        port,
        b"GET /generate_204 HTTP/1.1\r\nHost: x\r\nX-Tailscale-Challenge: abc-1.2_3\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 204 ")
    assert b"x-tailscale-response: response abc-1.2_3" in raw.lower()
    raw = await raw_exchange(
        "127.0.0.1", port, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 200 ")
    raw = await raw_exchange(
        "127.0.0.1", port, b"GET /relay HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 426 ")
    # the plain relay port serves nothing but the relay
    raw = await raw_exchange(
        "127.0.0.1", port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 404 ")


def test_relay_url(tmp_path):
    lan = make_config(tmp_path)
    assert relay_url(lan, 3340) == "http://127.0.0.1:3340"
    assert relay_url(lan, None) is None
    off = dataclasses.replace(lan, iroh=Iroh(enabled=False))
    assert relay_url(off, 3340) is None
    override = dataclasses.replace(off, metadata=Metadata(irohrelay="https://iroh.example"))
    assert relay_url(override, None) == "https://iroh.example"
    domain = dataclasses.replace(
        lan, mail_domain="chat.example", tls=dataclasses.replace(lan.tls, mode="acme")
    )
    port = domain.listen.https
    assert relay_url(domain, 3340) == f"https://chat.example:{port}"


async def test_metadata_irohrelay_is_the_plain_listener_in_lan_mode(relay_server):
    from tests.imap.util import PASSWORD, RawClient, new_addr

    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"x LOGIN {new_addr(relay_server)} {PASSWORD}\r\n".encode())
    lines = await client.command(b'a GETMETADATA "" /shared/vendor/deltachat/irohrelay\r\n')
    url = f"http://127.0.0.1:{port_of(relay_server)}".encode()
    assert lines[0] == b'* METADATA "" (/shared/vendor/deltachat/irohrelay {%d}\r\n%s)\r\n' % (
        len(url),
        url,
    )
    await client.aclose()


async def test_frames_sent_with_the_request_head_are_not_lost(relay_server):
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(relay_server))
    await stream.send_all(
        b"GET /relay HTTP/1.1\r\nHost: x\r\nUpgrade: iroh derp http\r\n\r\n"
        + frames.client_info(Ed25519PrivateKey.generate())
        + frames.encode(frames.PING, b"together")
    )
    client = RelayClient(stream, Ed25519PrivateKey.generate())
    received = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in received:
            received += await stream.receive_some(4096)
        head, _, rest = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        client.decoder.feed(rest)
        assert await client.frame() == frames.Frame(frames.PONG, b"together")
