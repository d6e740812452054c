"""Bounded resources: connections per IP and per account, inactivity timeouts, bad input."""

from __future__ import annotations

import dataclasses
import io

import pytest
import trio

import relay.imap.session
from relay.log import Logger
from tests.helpers import make_config
from tests.imap.util import PASSWORD, RawClient, new_addr


@pytest.fixture
def relay_config(tmp_path):
    config = make_config(tmp_path / "data")
    limits = dataclasses.replace(config.limits, max_connections_per_ip=3)
    return dataclasses.replace(config, limits=limits)


async def _logout(client: RawClient) -> None:
    """LOGOUT and wait until the relay has closed its side (and so released the slot)."""
    await client.command(b"z LOGOUT\r\n")
    with pytest.raises(EOFError):
        await client.read_line()
    await client.aclose()


async def test_connections_per_ip_are_capped(relay_server):
    clients = [await RawClient.connect(relay_server) for _ in range(3)]
    for client in clients:
        assert (await client.read_line()).startswith(b"* OK")
    extra = await RawClient.connect(relay_server)
    assert await extra.read_line() == b"* BYE Too many connections from your address.\r\n"
    await extra.aclose()
    await _logout(clients[0])
    again = await RawClient.connect(relay_server)
    assert (await again.read_line()).startswith(b"* OK")
    for client in [*clients[1:], again]:
        await client.aclose()


async def test_connections_per_account_are_capped(relay_server):
    app = relay_server.app
    limits = dataclasses.replace(app.config.limits, max_connections_per_account=2)
    app.config = dataclasses.replace(app.config, limits=limits)  # as a live reload would
    addr = new_addr(relay_server)
    clients = [await RawClient.connect(relay_server) for _ in range(3)]
    results = []
    for client in clients:
        await client.read_line()
        results += await client.command(f"a LOGIN {addr} {PASSWORD}\r\n".encode())
    assert [r.split(b" ")[1] for r in results] == [b"OK", b"OK", b"NO"]
    assert results[2] == b"a NO [LIMIT] Too many connections for this account.\r\n"
    await _logout(clients[0])
    (ok,) = await clients[2].command(f"c LOGIN {addr} {PASSWORD}\r\n".encode())
    assert ok.startswith(b"c OK")
    for client in clients[1:]:
        await client.aclose()


async def test_silent_client_is_logged_out(relay_server, monkeypatch):
    monkeypatch.setattr(relay.imap.session, "PREAUTH_TIMEOUT", 0.3)
    client = await RawClient.connect(relay_server)
    await client.read_line()
    assert await client.read_line(timeout=5) == b"* BYE Disconnected for inactivity.\r\n"
    await client.aclose()


async def test_garbage_gets_bad_and_the_session_goes_on(relay_server):
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.send(b"\x00\xff\xfe garbage\r\n")
    assert (await client.read_line()).startswith(b"* BAD")
    (bad,) = await client.command(b'a1 LOGIN "unterminated\r\n')
    assert bad.startswith(b"a1 BAD")
    (ok,) = await client.command(b"a2 NOOP\r\n")
    assert ok == b"a2 OK NOOP completed.\r\n"
    await client.aclose()


async def test_a_command_that_crashes_answers_no_and_the_session_goes_on(relay_server, monkeypatch):
    out = io.StringIO()
    relay_server.app.log = Logger(stream=out)
    state, search = relay.imap.session.HANDLERS["SEARCH"]

    async def buggy_search(s, cmd):
        raise ZeroDivisionError("a bug in SEARCH")

    monkeypatch.setitem(relay.imap.session.HANDLERS, "SEARCH", (state, buggy_search))
    client = await RawClient.connect(relay_server)
    await client.read_line()
    addr = new_addr(relay_server)
    await client.command(f"a LOGIN {addr} {PASSWORD}\r\n".encode())
    await client.command(b"b SELECT INBOX\r\n")
    (no,) = await client.command(b"c SEARCH ALL\r\n")
    assert no == b"c NO [SERVERBUG] Internal error, try again.\r\n"
    (ok,) = await client.command(b"d NOOP\r\n")
    assert ok == b"d OK NOOP completed.\r\n"
    monkeypatch.setitem(relay.imap.session.HANDLERS, "SEARCH", (state, search))
    search_again = await client.command(b"e SEARCH ALL\r\n")
    assert search_again == [b"* SEARCH\r\n", b"e OK Search completed.\r\n"]
    [logged] = [line for line in out.getvalue().splitlines() if "imap-command-failed" in line]
    assert "command=SEARCH" in logged and "ZeroDivisionError" in logged and "traceback=" in logged
    await client.aclose()


async def test_a_client_gone_during_idle_is_no_error(relay_server):
    out = io.StringIO()
    relay_server.app.log = Logger(stream=out)
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"a LOGIN {new_addr(relay_server)} {PASSWORD}\r\n".encode())
    await client.command(b"b SELECT INBOX\r\n")
    await client.send(b"c IDLE\r\n")
    assert await client.read_line() == b"+ idling\r\n"
    await client.aclose()  # a phone going away
    fresh = await RawClient.connect(relay_server)  # the relay still serves, and said nothing
    await fresh.read_line()
    (ok,) = await fresh.command(b"d NOOP\r\n")
    assert ok == b"d OK NOOP completed.\r\n"
    await fresh.aclose()
    await trio.sleep(0.2)
    assert "imap-command-failed" not in out.getvalue()
