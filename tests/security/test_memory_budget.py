"""Message bodies buffered at once share one memory budget across SMTP, IMAP APPEND and HTTP."""

from __future__ import annotations

import base64
import dataclasses
import http.client
import imaplib
import smtplib

import trio

from tests.helpers import RelayServer
from tests.imap.util import RawClient
from tests.smtp.session_helpers import PASSWORD, create_accounts


def submit(server: RelayServer, addr: str, body: bytes) -> None:
    """Send one message over SMTPS as the account itself."""
    with smtplib.SMTP_SSL(
        server.host, server.port("submissions"), context=server.ssl_client_context()
    ) as smtp:
        smtp.login(addr, PASSWORD)
        smtp.sendmail(addr, [addr], b"From: " + addr.encode() + b"\r\n\r\n" + body + b"\r\n")


async def read_until(stream: trio.abc.Stream, marker: bytes | None) -> bytes:
    """What the server says until a line starts with `marker` (None: until it closes)."""
    said = b""
    while marker is None or not any(line.startswith(marker) for line in said.split(b"\r\n")):
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            chunk = b""
        if not chunk:
            assert marker is None, f"closed before {marker!r}: {said!r}"
            return said
        said += chunk
    return said


def shrink_budget(server: RelayServer, size: int) -> None:
    limits = dataclasses.replace(
        server.app.config.limits, max_message_size=size, max_message_bytes_in_flight=size
    )
    server.app.config = dataclasses.replace(server.app.config, limits=limits)


async def test_a_body_beyond_the_shared_budget_is_refused_for_now(
    relay_server: RelayServer,
) -> None:
    shrink_budget(relay_server, 64 * 1024)
    budget = relay_server.app.body_budget
    assert budget.take(60 * 1024)  # other connections hold most of it
    [alice] = await create_accounts(relay_server, "alice0001")

    plain = base64.b64encode(f"\0{alice}\0{PASSWORD}".encode()).decode()
    with trio.fail_after(60):  # a backstop only
        tcp = await trio.open_tcp_stream(relay_server.host, relay_server.port("submissions"))
        stream = trio.SSLStream(tcp, relay_server.ssl_client_context(), server_hostname="x")
        commands = f"EHLO x\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<{alice}>\r\n"
        commands += f"RCPT TO:<{alice}>\r\nDATA\r\n"
        await stream.send_all(commands.encode())
        said = await read_until(stream, b"354 ")
        # One piece more than the 4 KiB left, then listen: the relay reads it all, so its close
        # carries its last reply (no unread bytes to turn the close into a reset).
        await stream.send_all(b"From: " + alice.encode() + b"\r\n\r\n" + b"x" * 8000)
        said += await read_until(stream, None)
    assert said.endswith(b"\r\n421 4.3.1 Insufficient system resources, try again later\r\n")
    # The refused message's bytes went back; the budget holds only what others hold.
    assert budget.used == 60 * 1024

    def post() -> int:
        conn = http.client.HTTPConnection(relay_server.host, relay_server.port("http"), timeout=10)
        conn.request("POST", "/mxdeliv", body=b"x" * 20000, headers={"X-Mail-To": alice})
        return conn.getresponse().status

    assert await trio.to_thread.run_sync(post) == 503
    assert budget.used == 60 * 1024
    budget.give_back(60 * 1024)
    assert await trio.to_thread.run_sync(post) == 400  # now read, and refused for what it is
    assert budget.used == 0


async def test_a_message_read_and_refused_gives_its_bytes_back(relay_server: RelayServer) -> None:
    [alice] = await create_accounts(relay_server, "alice0002")

    def submit() -> None:
        ctx = relay_server.ssl_client_context()
        with smtplib.SMTP_SSL(
            relay_server.host, relay_server.port("submissions"), context=ctx
        ) as smtp:
            smtp.login(alice, PASSWORD)
            try:
                smtp.sendmail(alice, [alice], b"From: " + alice.encode() + b"\r\n\r\nplain\r\n")
            except smtplib.SMTPDataError as e:
                assert e.smtp_code == 523  # refused by the PGP gate, after the body was read

    await trio.to_thread.run_sync(submit)
    assert relay_server.app.body_budget.used == 0


async def test_an_imap_append_is_charged_to_the_same_budget(relay_server: RelayServer) -> None:
    [alice] = await create_accounts(relay_server, "alice0003")
    shrink_budget(relay_server, 64 * 1024)
    budget = relay_server.app.body_budget
    message = b"From: " + alice.encode() + b"\r\n\r\n" + b"x" * 40000 + b"\r\n"

    def append() -> tuple[str, list]:
        imap = imaplib.IMAP4_SSL(
            relay_server.host,
            relay_server.port("imaps"),
            ssl_context=relay_server.ssl_client_context(),
        )
        try:
            imap.login(alice, PASSWORD)
            return imap.append("INBOX", "", None, message)
        finally:  # no LOGOUT: after a BYE the server may already have closed the connection
            imap.shutdown()

    assert budget.take(60 * 1024)  # other connections hold most of it
    try:
        await trio.to_thread.run_sync(append)
        raise AssertionError("the APPEND was read beyond the budget")
    except imaplib.IMAP4.abort as e:
        assert "Insufficient system resources" in str(e)
    assert budget.used == 60 * 1024  # the refused literal's bytes went back
    budget.give_back(60 * 1024)
    typ, _ = await trio.to_thread.run_sync(append)
    assert typ == "OK"
    assert budget.used == 0
    assert len((await relay_server.app.store.snapshot(alice, "INBOX")).messages) == 1


async def test_twenty_sessions_of_one_account_cannot_buffer_more_than_the_budget(
    relay_server: RelayServer,
) -> None:
    [alice] = await create_accounts(relay_server, "alice0004")
    shrink_budget(relay_server, 1 << 20)
    budget = relay_server.app.body_budget
    message = b"From: " + alice.encode() + b"\r\n\r\n" + b"x" * (100 * 1024)
    all_sent = trio.Event()
    sent = 0
    held: list[int] = []
    results: list[bytes] = []

    async def append() -> None:
        nonlocal sent
        client = await RawClient.connect(relay_server)
        await client.read_line()
        await client.command(f"a LOGIN {alice} {PASSWORD}\r\n".encode())
        try:
            # All but the last byte: the relay must hold it all until the literal is complete.
            await client.send(b"b APPEND INBOX {%d+}\r\n" % len(message) + message[:-1])
            sent += 1
            if sent == 20:
                all_sent.set()
            await all_sent.wait()
            await client.send(message[-1:] + b"\r\n")
        except trio.BrokenResourceError:
            pass  # refused while sending: the BYE is already on its way
        try:
            results.append((await client.read_line())[:40])
        except (EOFError, trio.BrokenResourceError):
            # Closed while our bytes were still coming: the reset may overtake the BYE.
            results.append(b"* BYE (lost in the reset)")
        await client.aclose()

    async def count_sent_or_refused() -> None:
        while len(results) < 20:
            held.append(budget.used)
            if sent + len(results) >= 20:
                all_sent.set()
            await trio.sleep(0.005)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(count_sent_or_refused)
            for _ in range(20):
                nursery.start_soon(append)
    assert max(held) <= 1 << 20  # never more than the budget, across all 20 sessions
    stored = len([r for r in results if r.startswith(b"b OK [APPENDUID")])
    refused = [r for r in results if r.startswith(b"* BYE")]
    assert b"* BYE Insufficient system resources, try" in refused
    assert stored + len(refused) == 20, [r for r in results if not r.startswith(b"* BYE")]
    assert 1 <= stored < 20  # what fitted was stored, the rest refused instead of buffered
    assert budget.used == 0
    assert len((await relay_server.app.store.snapshot(alice, "INBOX")).messages) == stored
