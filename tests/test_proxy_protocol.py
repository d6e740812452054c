"""The PROXY protocol: the parser on its own, and a relay whose listeners read the header from
its load balancer only (here the balancer is 127.0.0.1; clients come from other loopbacks)."""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from relay.config import Config, Limits
from relay.proxy_protocol import (
    MAX_HEADER,
    V2_SIGNATURE,
    Address,
    ProxyError,
    ProxyHeader,
    parse,
)
from relay.smtp.session import TOO_MANY_CONNECTIONS
from tests.helpers import RelayServer, make_config

BALANCER = "127.0.0.1"


def v1(family: str, src: str, dst: str, sport: int, dport: int) -> bytes:
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v2(command: int, family: int, addresses: bytes, tlvs: bytes = b"") -> bytes:
    payload = addresses + tlvs
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, len(payload)) + payload


def v2_tcp4(src: str, sport: int, dst: str = "192.0.2.1", dport: int = 25) -> bytes:
    packed = ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
    return v2(1, 0x11, packed + struct.pack("!HH", sport, dport))


def v2_tcp6(src: str, sport: int, dst: str = "2001:db8::1", dport: int = 25) -> bytes:
    packed = ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
    return v2(1, 0x21, packed + struct.pack("!HH", sport, dport))


# -- the parser -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "source"),
    [
        (v1("TCP4", "198.51.100.7", "192.0.2.1", 40000, 25), Address("198.51.100.7", 40000)),
        (v1("TCP6", "2001:db8::7", "2001:db8::1", 1, 993), Address("2001:db8::7", 1)),
        (v1("TCP6", "::ffff:198.51.100.7", "::1", 5, 6), Address("198.51.100.7", 5)),
        (b"PROXY UNKNOWN\r\n", None),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None),
        (v2_tcp4("198.51.100.7", 40000), Address("198.51.100.7", 40000)),
        (v2_tcp6("2001:db8::7", 65535), Address("2001:db8::7", 65535)),
        (v2_tcp6("::ffff:203.0.113.9", 7), Address("203.0.113.9", 7)),
        # TLVs after the addresses (HAProxy's ALPN, unique id, ...) are skipped
        (v2_tcp4("198.51.100.7", 1) + b"", Address("198.51.100.7", 1)),
        (
            v2(1, 0x11, bytes(12), tlvs=b"\x01\x00\x02h2" + b"\x05\x00\x03abc"),
            Address("0.0.0.0", 0),
        ),
        (v2(0, 0x00, b""), None),  # LOCAL: a health check, no client
        (v2(0, 0x11, bytes(12)), None),  # LOCAL ignores the addresses it carries
        (v2(1, 0x00, b""), None),  # UNSPEC
        (v2(1, 0x31, bytes(216)), None),  # AF_UNIX
        (v2(1, 0x12, bytes(12)), None),  # UDP over IPv4
    ],
)
def test_a_header_names_the_client_and_its_length(header: bytes, source: Address | None) -> None:
    client_bytes = b"EHLO client.example\r\n"
    assert parse(header + client_bytes) == ProxyHeader(len(header), source)


@pytest.mark.parametrize(
    "header",
    [
        v1("TCP4", "198.51.100.7", "192.0.2.1", 40000, 25),
        v2_tcp4("198.51.100.7", 40000),
        v2(1, 0x11, bytes(12), tlvs=bytes(300)),
    ],
)
def test_a_header_arriving_byte_by_byte_is_complete_only_at_its_end(header: bytes) -> None:
    for n in range(len(header)):
        assert parse(header[:n]) is None, n
    assert parse(header) is not None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"EHLO client.example\r\n", "not a PROXY protocol header"),
        (b"\x16\x03\x01\x02\x00", "not a PROXY protocol header"),  # a TLS ClientHello
        (b"PROXY TCP4 198.51.100.7 192.0.2.1 40000\r\n", "not 'PROXY TCP4|TCP6"),
        (b"PROXY UDP4 198.51.100.7 192.0.2.1 1 2\r\n", "not 'PROXY TCP4|TCP6"),
        (v1("TCP4", "2001:db8::7", "192.0.2.1", 1, 2), "is not an IPv4 address"),
        (v1("TCP6", "198.51.100.7", "::1", 1, 2), "is not an IPv6 address"),
        (v1("TCP4", "198.51.100.300", "192.0.2.1", 1, 2), "not an IP address"),
        (v1("TCP4", "198.51.100.7", "192.0.2.1", 65536, 2), "not a port"),
        (b"PROXY TCP4 198.51.100.7 192.0.2.1 -1 2\r\n", "not a port"),
        (b"PROXY TCP4 198.51.100.\xff 192.0.2.1 1 2\r\n", "not ASCII"),
        (b"PROXY " + b"x" * 200, "longer than 107 bytes"),
        (V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "unknown version 1"),
        (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unknown command 2"),
        (v2(1, 0x11, bytes(8)), "fewer than 12 address bytes"),
        (v2(1, 0x21, bytes(12)), "fewer than 36 address bytes"),
        (V2_SIGNATURE + b"\x21\x11\xff\xff", "at most 2048"),
    ],
)
def test_a_malformed_header_is_refused_saying_why(data: bytes, reason: str) -> None:
    with pytest.raises(ProxyError, match=reason.replace("|", r"\|")):
        parse(data)


def test_no_header_is_longer_than_the_bound_a_reader_needs() -> None:
    longest = v2(1, 0x11, bytes(12), tlvs=bytes(2048 - 12))
    assert parse(longest) == ProxyHeader(MAX_HEADER, Address("0.0.0.0", 0))


# -- a relay behind a balancer -----------------------------------------------------------------


@pytest.fixture
def relay_config(tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    """Behind the balancer, on 127.0.0.1 or on the listen addresses a test passes as param."""
    config = make_config(tmp_path / "data", host="127.0.0.1")
    listen = dataclasses.replace(
        config.listen,
        address=getattr(request, "param", config.listen.address),
        proxy_protocol=True,
        proxy_from=[BALANCER],
    )
    return dataclasses.replace(config, listen=listen, limits=Limits(max_connections_per_ip=1))


async def connect(relay: RelayServer, service: str, source: str = BALANCER) -> trio.SocketStream:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect((relay.host, relay.port(service)))
    return trio.SocketStream(sock)


async def receive_line(stream: trio.SocketStream) -> bytes:
    data = b""
    with trio.fail_after(10):  # a backstop: a missing answer fails instead of hanging
        while b"\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
    return data


@pytest.fixture
async def smtp_via_balancer(relay_server: RelayServer) -> AsyncIterator:
    streams: list[trio.SocketStream] = []

    async def open_as(header: bytes) -> bytes:
        stream = await connect(relay_server, "smtp")
        streams.append(stream)
        await stream.send_all(header)
        return await receive_line(stream)

    yield open_as
    for stream in streams:
        await stream.aclose()


@pytest.mark.parametrize(
    "make_header", [v2_tcp4, lambda ip, port: v1("TCP4", ip, BALANCER, port, 25)]
)
async def test_the_per_ip_cap_counts_the_client_the_header_names(
    smtp_via_balancer, make_header
) -> None:
    # All three come from the balancer's address; the cap of one per IP is the clients'.
    assert (await smtp_via_balancer(make_header("198.51.100.7", 40000))).startswith(b"220 ")
    assert (await smtp_via_balancer(make_header("198.51.100.7", 40001))) == TOO_MANY_CONNECTIONS
    assert (await smtp_via_balancer(make_header("198.51.100.8", 40002))).startswith(b"220 ")


@pytest.mark.parametrize("relay_config", [["::"]], indirect=True)
async def test_a_balancer_on_ipv4_is_believed_on_the_dual_stack_socket(
    relay_server: RelayServer,
) -> None:
    # It arrives as ::ffff:<BALANCER> there: still the configured IPv4 balancer.
    streams = []
    for client in ("198.51.100.7", "198.51.100.7", "198.51.100.8"):
        sock = trio.socket.socket()
        await sock.bind((BALANCER, 0))
        await sock.connect(("127.0.0.1", relay_server.port("smtp")))
        streams.append(trio.SocketStream(sock))
        await streams[-1].send_all(v2_tcp4(client, 40000))
    replies = [await receive_line(stream) for stream in streams]
    assert replies[0].startswith(b"220 ") and replies[2].startswith(b"220 ")
    assert replies[1] == TOO_MANY_CONNECTIONS  # the cap is the client's, from the header
    assert relay_server.app.admission.per_ip.count("198.51.100.7") == 1
    for stream in streams:
        await stream.aclose()


async def test_a_health_check_without_a_client_is_served_as_the_balancer(
    smtp_via_balancer,
) -> None:
    assert (await smtp_via_balancer(v2(0, 0x00, b""))).startswith(b"220 ")
    assert (await smtp_via_balancer(v2(0, 0x00, b""))) == TOO_MANY_CONNECTIONS


async def test_the_client_bytes_that_came_with_the_header_are_read(
    relay_server: RelayServer,
) -> None:
    stream = await connect(relay_server, "http")
    request = f"GET /new HTTP/1.1\r\nHost: {relay_server.domain}\r\n\r\n".encode()
    await stream.send_all(v2_tcp4("198.51.100.7", 40000) + request)  # one segment
    assert (await receive_line(stream)).startswith(b"HTTP/1.1 ")
    await stream.aclose()


async def test_a_balancer_connection_without_a_header_is_closed_unanswered(
    relay_server: RelayServer,
) -> None:
    stream = await connect(relay_server, "smtp")
    await stream.send_all(b"EHLO client.example\r\n")
    assert await receive_line(stream) == b""
    await stream.aclose()


async def test_a_header_from_anyone_but_the_balancer_is_not_believed(
    relay_server: RelayServer,
) -> None:
    stream = await connect(relay_server, "smtp", source="127.0.0.2")
    assert (await receive_line(stream)).startswith(b"220 ")  # served as it came, no header read
    await stream.send_all(v1("TCP4", "198.51.100.7", "192.0.2.1", 40000, 25))
    assert (await receive_line(stream)).startswith(b"500 5.5.2 ")
    # its connection counts for 127.0.0.2, not for the address it claimed
    second = await connect(relay_server, "smtp", source="127.0.0.2")
    assert await receive_line(second) == TOO_MANY_CONNECTIONS
    for s in (stream, second):
        await s.aclose()


async def smtp_line_after(relay: RelayServer, header: bytes) -> bytes:
    stream = await connect(relay, "smtp")
    await stream.send_all(header)
    line = await receive_line(stream)
    await stream.aclose()
    return line


async def test_a_probe_that_sends_nothing_is_closed_without_a_warning(
    relay_server: RelayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = await connect(relay_server, "smtp")
    await probe.aclose()  # a port check: connect, close
    cut = await connect(relay_server, "smtp")
    await cut.send_all(v2_tcp4("198.51.100.7", 40000)[:10])
    await cut.aclose()
    logged = ""
    with trio.fail_after(10):  # a backstop
        while "proxy-header-refused" not in logged:
            await trio.sleep(0.05)
            logged += capsys.readouterr().err
    # a served connection after both: the probe (accepted first) has been handled by now
    assert (await smtp_line_after(relay_server, v2_tcp4("198.51.100.9", 1))).startswith(b"220 ")
    logged += capsys.readouterr().err
    assert logged.count("proxy-header-refused") == 1
    assert 'reason="connection closed before the end of the PROXY header"' in logged
