"""Connecting and logging in over real TLS: capabilities, JIT accounts, STARTTLS, AUTHENTICATE."""

from __future__ import annotations

import base64
import imaplib

import pytest
import trio
from imapclient.exceptions import LoginError

from tests.helpers import record_throttle_delays
from tests.imap.util import PASSWORD, RawClient, imapclient, in_thread, new_addr


async def test_capabilities_before_login_include_the_chatmail_markers(relay_server):
    client = await RawClient.connect(relay_server)
    greeting = await client.read_line()
    assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    for cap in (b"XCHATMAIL", b"XDELTAPUSH", b"IDLE", b"LITERAL+", b"AUTH=PLAIN"):
        assert cap in greeting
    lines = await client.command(b"c1 CAPABILITY\r\n")
    assert lines[0].startswith(b"* CAPABILITY IMAP4rev1 ") and b"XCHATMAIL" in lines[0]
    assert lines[1].startswith(b"c1 OK")
    await client.aclose()


async def test_login_creates_the_account_and_answers_with_capabilities(relay_server):
    addr = new_addr(relay_server)
    client = await RawClient.connect(relay_server)
    await client.read_line()
    (ok,) = await client.command(f'A0001 LOGIN "{addr}" "{PASSWORD}"\r\n'.encode())
    assert ok.startswith(b"A0001 OK [CAPABILITY IMAP4rev1 ")
    caps = ok.split(b"[", 1)[1].split(b"]", 1)[0].split()
    for cap in (
        b"XCHATMAIL",
        b"XDELTAPUSH",
        b"METADATA",
        b"QUOTA",
        b"COMPRESS=DEFLATE",
        b"IDLE",
        b"MOVE",
        b"UIDPLUS",
        b"CONDSTORE",
        b"ID",
        b"ENABLE",
        b"NAMESPACE",
        b"UNSELECT",
        b"SPECIAL-USE",
        b"LITERAL+",
    ):
        assert cap in caps
    assert await relay_server.app.store.account_exists(addr)
    await client.aclose()


def _login(relay, addr, password):
    client = imapclient(relay)
    try:
        client.login(addr, password)
        return "ok"
    except LoginError as e:
        return str(e)
    finally:
        client.shutdown()


async def test_wrong_password_short_password_and_foreign_domain_fail(relay_server):
    addr = new_addr(relay_server)
    assert await in_thread(_login, relay_server, addr, PASSWORD) == "ok"
    assert await in_thread(_login, relay_server, addr, PASSWORD) == "ok"
    wrong = await in_thread(_login, relay_server, addr, "another-password")
    assert "AUTHENTICATIONFAILED" in wrong
    # The stored password is never replaced by a failed login.
    assert await in_thread(_login, relay_server, addr, PASSWORD) == "ok"
    short = await in_thread(_login, relay_server, new_addr(relay_server), "admin")
    assert "AUTHENTICATIONFAILED" in short
    foreign = await in_thread(_login, relay_server, "invalid0@example.invalid", PASSWORD)
    assert "FAILED" in foreign


async def test_two_accounts_may_share_a_password(relay_server):
    for _ in range(2):
        assert await in_thread(_login, relay_server, new_addr(relay_server), PASSWORD) == "ok"


async def test_ten_concurrent_first_logins_of_one_account_all_succeed(relay_server):
    addr = new_addr(relay_server)
    results = []

    async def one():
        results.append(await in_thread(_login, relay_server, addr, PASSWORD))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(one)
    assert results == ["ok"] * 10


async def test_authenticate_plain_with_and_without_initial_response(relay_server):
    addr = new_addr(relay_server)
    token = base64.b64encode(f"\0{addr}\0{PASSWORD}".encode())
    client = await RawClient.connect(relay_server)
    await client.read_line()
    (ok,) = await client.command(b"a1 AUTHENTICATE PLAIN " + token + b"\r\n")
    assert ok.startswith(b"a1 OK [CAPABILITY ")
    await client.aclose()

    def imaplib_auth():
        imap = imaplib.IMAP4_SSL(
            relay_server.host,
            relay_server.port("imaps"),
            ssl_context=relay_server.ssl_client_context(),
        )
        typ, _ = imap.authenticate("PLAIN", lambda _: f"\0{addr}\0{PASSWORD}".encode())
        imap.logout()
        return typ

    assert await in_thread(imaplib_auth) == "OK"


async def test_plain_port_refuses_login_before_starttls(relay_server):
    addr = new_addr(relay_server)
    client = await RawClient.connect(relay_server, service="imap")
    greeting = await client.read_line()
    assert b"STARTTLS" in greeting and b"LOGINDISABLED" in greeting
    assert b"AUTH=PLAIN" not in greeting
    (refused,) = await client.command(f"a1 LOGIN {addr} {PASSWORD}\r\n".encode())
    assert refused.startswith(b"a1 NO [PRIVACYREQUIRED]")
    (refused,) = await client.command(b"a2 AUTHENTICATE PLAIN AGEAYg==\r\n")
    assert refused.startswith(b"a2 NO [PRIVACYREQUIRED]")
    assert not await relay_server.app.store.account_exists(addr)
    (go,) = await client.command(b"a3 STARTTLS\r\n")
    assert go.startswith(b"a3 OK")
    await client.starttls(relay_server.ssl_client_context())
    caps = await client.command(b"a4 CAPABILITY\r\n")
    assert b"LOGINDISABLED" not in caps[0] and b"AUTH=PLAIN" in caps[0]
    (ok,) = await client.command(f"a5 LOGIN {addr} {PASSWORD}\r\n".encode())
    assert ok.startswith(b"a5 OK [CAPABILITY")
    await client.aclose()


async def test_starttls_with_imaplib(relay_server):
    addr = new_addr(relay_server)

    def session():
        imap = imaplib.IMAP4(relay_server.host, relay_server.port("imap"))
        imap.starttls(ssl_context=relay_server.ssl_client_context())
        typ, _ = imap.login(addr, PASSWORD)
        imap.logout()
        return typ

    assert await in_thread(session) == "OK"


async def test_commands_pipelined_behind_starttls_are_dropped(relay_server):
    client = await RawClient.connect(relay_server, service="imap")
    await client.read_line()
    await client.send(b"a1 STARTTLS\r\na2 CAPABILITY\r\n")
    assert (await client.read_line()).startswith(b"a1 OK")
    await client.starttls(relay_server.ssl_client_context())
    (noop,) = await client.command(b"a3 NOOP\r\n")
    assert noop.startswith(b"a3 OK")  # nothing answered for the injected a2
    await client.aclose()


async def test_id_enable_namespace_noop_logout(relay_server):
    addr = new_addr(relay_server)

    def session():
        client = imapclient(relay_server, addr)
        server_id = client.id_({"name": "Delta Chat"})
        enabled = client.enable("CONDSTORE")
        namespace = client.namespace()
        client.noop()
        bye = client.logout()
        return server_id, enabled, namespace, bye

    server_id, enabled, namespace, bye = await in_thread(session)
    assert server_id[0][0] == b"name"
    assert enabled == [b"CONDSTORE"]
    assert namespace.personal == (("", "/"),)  # imapclient decodes the namespace to str
    assert bye == b"Logging out."


async def test_commands_need_the_right_state(relay_server):
    client = await RawClient.connect(relay_server)
    await client.read_line()
    (refused,) = await client.command(b"a1 SELECT INBOX\r\n")
    assert refused.startswith(b"a1 BAD")
    addr = new_addr(relay_server)
    await client.command(f"a2 LOGIN {addr} {PASSWORD}\r\n".encode())
    (refused,) = await client.command(b"a3 FETCH 1 FLAGS\r\n")
    assert refused == b"a3 BAD No mailbox selected.\r\n"
    (again,) = await client.command(f"a4 LOGIN {addr} {PASSWORD}\r\n".encode())
    assert again.startswith(b"a4 BAD")
    await client.aclose()


async def test_failed_logins_are_slowed_down(relay_server, monkeypatch):
    addr = new_addr(relay_server)
    assert await in_thread(_login, relay_server, addr, PASSWORD) == "ok"
    delays = record_throttle_delays(monkeypatch)
    waited = []
    for _ in range(6):
        before = len(delays)
        assert "AUTHENTICATIONFAILED" in await in_thread(_login, relay_server, addr, "wrong-pass-1")
        waited.append(delays[before:])
    # Over IMAP as over SMTP: four attempts answered at once, then 0.5 s, 1 s.
    assert waited == [[], [], [], [], [0.5], [1.0]]


@pytest.mark.parametrize("line", [b"a1 NOOP " + b"x" * 70_000 + b"\r\n"])
async def test_overlong_command_line_ends_the_connection(relay_server, line):
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.send(line)
    bye = await client.read_line()
    assert bye.startswith(b"* BYE")
    await client.aclose()
