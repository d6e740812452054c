"""The HTTP/1.1 server over real sockets: keep-alive, limits, timeouts and error statuses."""

from __future__ import annotations

import pytest
import trio

from relay.web import routes, server
from relay.web.types import Request, Response
from tests.web.client import HTTPClient, fetch, raw_exchange

AUTOCONFIG = "/mail/config-v1.1.xml"


def status_of(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1.1 "), raw[:80]
    return int(raw.split(b" ", 2)[1])


async def test_keep_alive_serves_several_requests_on_one_connection(relay_server):
    client = await HTTPClient.connect(relay_server.host, relay_server.port("http"))
    try:
        first = await client.request("GET", AUTOCONFIG)
        second = await client.request("GET", AUTOCONFIG)
        head = await client.request("HEAD", AUTOCONFIG)
        missing = await client.request("GET", "/favicon.ico")
        again = await client.request("GET", AUTOCONFIG)
    finally:
        await client.aclose()
    assert first.status == second.status == head.status == again.status == 200
    assert first.body == second.body
    assert head.body == b"" and int(head.headers["content-length"]) == len(first.body)
    assert missing.status == 404


async def test_https_listener_serves_the_same_pages(relay_server):
    reply = await fetch(
        relay_server.host,
        relay_server.port("https"),
        "GET",
        AUTOCONFIG,
        tls=relay_server.ssl_client_context(),
    )
    assert reply.status == 200
    assert b"<clientConfig" in reply.body


async def test_wrong_method_gets_405_with_allow(relay_server):
    reply = await fetch(relay_server.host, relay_server.port("http"), "DELETE", "/new")
    assert reply.status == 405
    assert set(reply.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


async def test_oversized_head_gets_431(relay_server):
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    raw = await raw_exchange(relay_server.host, relay_server.port("http"), head)
    assert status_of(raw) == 431


async def test_declared_oversized_body_gets_413_before_it_is_sent(relay_server):
    head = b"POST /new HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
    raw = await raw_exchange(relay_server.host, relay_server.port("http"), head)
    assert status_of(raw) == 413


async def test_chunked_oversized_body_gets_413(relay_server):
    chunk = b"%x\r\n%s\r\n" % (3000, b"x" * 3000)
    data = b"POST /new HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3
    raw = await raw_exchange(relay_server.host, relay_server.port("http"), data)
    assert status_of(raw) == 413


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"POST /new HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
    ],
)
async def test_malformed_requests_get_400(relay_server, data):
    raw = await raw_exchange(relay_server.host, relay_server.port("http"), data)
    assert status_of(raw) == 400


@pytest.mark.parametrize("target", [b"//[", b"http://[::1/new", b"/x?a=//["])
async def test_a_target_urlsplit_refuses_gets_404_not_a_dropped_connection(relay_server, target):
    """Found by fuzzing: urlsplit raised ValueError ("Invalid IPv6 URL") out of the session."""
    data = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = await raw_exchange(relay_server.host, relay_server.port("http"), data)
    assert status_of(raw) == 404


async def test_slow_request_head_gets_408(relay_server, monkeypatch):
    monkeypatch.setattr(server, "HEAD_TIMEOUT", 0.5)
    raw = await raw_exchange(relay_server.host, relay_server.port("http"), b"GET / HTTP/1.1\r\n")
    assert status_of(raw) == 408


async def test_idle_keep_alive_connection_is_closed_quietly(relay_server, monkeypatch):
    monkeypatch.setattr(server, "HEAD_TIMEOUT", 0.5)
    client = await HTTPClient.connect(relay_server.host, relay_server.port("http"))
    assert (await client.request("GET", AUTOCONFIG)).status == 200
    with trio.fail_after(5):
        assert await client.stream.receive_some(1000) == b""
    await client.aclose()


async def test_slow_body_gets_408(relay_server, monkeypatch):
    monkeypatch.setattr(server, "BODY_GRACE", 0.5)
    data = b"POST /new HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}"
    raw = await raw_exchange(relay_server.host, relay_server.port("http"), data)
    assert status_of(raw) == 408


async def test_a_route_added_to_the_table_gets_its_own_body_limit(relay_server, monkeypatch):
    """How federation adds POST /mxdeliv: one Route with the message size as body limit."""

    async def echo_size(request: Request, app) -> Response:
        return Response(200, str(len(request.body)).encode())

    route = routes.Route(
        "/echo-size",
        frozenset({"POST"}),
        echo_size,
        max_body=lambda config: config.limits.max_message_size,
    )
    monkeypatch.setattr(routes, "ROUTES", [*routes.ROUTES, route])
    body = b"x" * (2 << 20)
    reply = await fetch(relay_server.host, relay_server.port("http"), "POST", "/echo-size", body)
    assert (reply.status, reply.body) == (200, str(len(body)).encode())
    small = await fetch(relay_server.host, relay_server.port("http"), "POST", "/new", b"x" * 5000)
    assert small.status == 413


async def test_a_crashing_page_answers_500_and_the_relay_goes_on(relay_server, monkeypatch):
    async def broken(request: Request, app) -> Response:
        raise RuntimeError("bug")

    route = routes.Route("/broken", routes.GET, broken)
    monkeypatch.setattr(routes, "ROUTES", [route, *routes.ROUTES])
    client = await HTTPClient.connect(relay_server.host, relay_server.port("http"))
    try:
        assert (await client.request("GET", "/broken")).status == 500
        assert (await client.request("GET", AUTOCONFIG)).status == 200
    finally:
        await client.aclose()


async def test_expect_100_continue_is_answered_before_the_body(relay_server):
    stream = await trio.open_tcp_stream(relay_server.host, relay_server.port("http"))
    head = b"POST /new HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    with trio.fail_after(10):
        await stream.send_all(head)
        interim = await stream.receive_some(1000)
        assert interim.startswith(b"HTTP/1.1 100 ")
        await stream.send_all(b"{}")
        final = b""
        while b"\r\n\r\n" not in final:
            final += await stream.receive_some(1000)
    assert final.startswith(b"HTTP/1.1 200 ")
    await stream.aclose()
