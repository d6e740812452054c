"""A relay behind a real HAProxy (Debian's) that sends the PROXY protocol (v1 and v2): the relay's
per-IP limits see the clients, not the balancer, and HAProxy's own health checks keep the relay
in service."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from relay.config import Config, Limits
from relay.smtp.session import TOO_MANY_CONNECTIONS
from tests.haproxy import Frontend, HAProxy
from tests.helpers import RelayServer, client_context, make_config

NODE = "127.0.0.2"
BALANCER = "127.0.0.3"


@pytest.fixture(params=["send-proxy-v2", "send-proxy"])
def send_proxy(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def relay_config(tmp_path: Path) -> Config:
    config = make_config(tmp_path / "data", host=NODE)
    return dataclasses.replace(
        config,
        listen=dataclasses.replace(config.listen, proxy_protocol=True, proxy_from=[BALANCER]),
        limits=Limits(max_connections_per_ip=1),
    )


@pytest.fixture
async def balancer(
    relay_server: RelayServer, send_proxy: str, tmp_path: Path
) -> AsyncIterator[HAProxy]:
    port = relay_server.port
    frontends = [
        # smtpchk: the health check (a PROXY v2 LOCAL header, then HELO) must be answered 2xx
        Frontend("smtp", port("smtp"), port("smtp"), [NODE], check="smtpchk"),
        Frontend("imaps", port("imaps"), port("imaps"), [NODE]),
    ]
    haproxy = HAProxy(BALANCER, frontends, tmp_path, send_proxy=send_proxy)
    await trio.to_thread.run_sync(haproxy.start)
    try:
        yield haproxy
    finally:
        await trio.to_thread.run_sync(haproxy.stop)


async def through(haproxy: HAProxy, service: str, client: str) -> trio.SocketStream:
    port = next(f.port for f in haproxy.frontends if f.name == service)
    sock = trio.socket.socket()
    await sock.bind((client, 0))
    await sock.connect((haproxy.address, port))
    return trio.SocketStream(sock)


async def first_line(stream: trio.abc.Stream) -> bytes:
    data = b""
    with trio.fail_after(10):  # a backstop: a missing answer fails instead of hanging
        while b"\n" not in data and (chunk := await stream.receive_some(4096)):
            data += chunk
    return data


async def test_the_per_ip_cap_counts_each_client_behind_the_balancer(
    balancer: HAProxy,
) -> None:
    await trio.sleep(1.5)  # three rounds of health checks (inter 500ms, fall 2) were made
    assert " is DOWN" not in balancer.log_path.read_text()
    first = await through(balancer, "smtp", "127.0.0.10")
    assert (await first_line(first)).startswith(b"220 ")
    again = await through(balancer, "smtp", "127.0.0.10")
    assert await first_line(again) == TOO_MANY_CONNECTIONS
    other = await through(balancer, "smtp", "127.0.0.11")
    assert (await first_line(other)).startswith(b"220 ")
    for stream in (first, again, other):
        await stream.aclose()


async def test_imaps_through_the_balancer_greets_after_the_handshake(
    balancer: HAProxy, relay_server: RelayServer
) -> None:
    tcp = await through(balancer, "imaps", "127.0.0.12")
    tls = trio.SSLStream(tcp, client_context(relay_server.config), server_hostname=NODE)
    assert (await first_line(tls)).startswith(b"* OK ")
    await tls.aclose()
