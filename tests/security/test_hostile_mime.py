"""A deeply nested message cannot stall the relay: while one session's FETCH walks its
structure, another session's NOOP is answered, and on port 25 such a message is refused."""

from __future__ import annotations

import smtplib
import threading

import pytest
import trio

from relay import mime
from relay.imap import fetch as fetch_mod
from tests.helpers import RelayServer, nested_message
from tests.imap.util import PASSWORD, RawClient, in_thread, new_addr


async def logged_in(relay: RelayServer, addr: str) -> RawClient:
    client = await RawClient.connect(relay)
    await client.read_line()
    (ok,) = await client.command(f"a LOGIN {addr} {PASSWORD}\r\n".encode())
    assert ok.startswith(b"a OK")
    return client


async def append(client: RawClient, data: bytes) -> None:
    lines = await client.command(b"b APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n", 30)
    assert lines[-1].startswith(b"b OK"), lines[-1]


async def test_fetching_a_deep_structure_leaves_other_sessions_answered(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await logged_in(relay_server, new_addr(relay_server))
    await append(owner, nested_message(400, 1 << 20))
    await append(owner, nested_message(10_000, 1 << 20))
    (*_, ok) = await owner.command(b"c SELECT INBOX\r\n")
    assert ok.startswith(b"c OK")
    other = await logged_in(relay_server, new_addr(relay_server))

    # The first structure walk is held until the other session's NOOP is answered. A walk on
    # the event loop would hold the loop too: the NOOP would then be answered only after it.
    walking, go_on = threading.Event(), threading.Event()
    walks_done: list[int] = []
    walk = fetch_mod.fetch_response

    def held_walk(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not go_on.is_set():
            walking.set()
            go_on.wait(20)
        try:
            return walk(*args, **kwargs)
        finally:
            walks_done.append(1)

    monkeypatch.setattr(fetch_mod, "fetch_response", held_walk)
    fetched: list[list[bytes]] = []

    async def fetch_repeatedly() -> None:
        for i in range(3):
            tag = b"f%d" % i
            fetched.append(
                await owner.command(tag + b" FETCH 1:2 (BODYSTRUCTURE ENVELOPE BODY[1.1])\r\n", 60)
            )

    noops_during_the_walk = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch_repeatedly)
        with trio.fail_after(60):  # a backstop only
            while not walking.is_set():
                await trio.sleep(0.01)
            for _ in range(3):
                (ok,) = await other.command(b"n NOOP\r\n")
                assert ok.startswith(b"n OK")
                noops_during_the_walk.append(not walks_done)
        go_on.set()
    assert noops_during_the_walk == [True, True, True]

    for lines in fetched:
        assert lines[-1].startswith(b"f") and b" OK " in lines[-1]
        answers = [line for line in lines if line.startswith(b"* ")]
        assert len(answers) == 2
        for answer in answers:
            # Cut at the limit and shown as one opaque part; the subject from the header; the
            # part byte-exact.
            assert b'"APPLICATION" "OCTET-STREAM"' in answer.upper()
            assert b'"deep"' in answer
            assert b"BODY[1.1] {" in answer
            assert b'--b2\r\nContent-Type: multipart/mixed; boundary="b3"\r\n' in answer
    assert len(walks_done) == 6  # two messages, three times


async def test_a_deep_structure_is_refused_on_port_25(relay_server: RelayServer) -> None:
    bob = new_addr(relay_server)
    owner = await logged_in(relay_server, bob)  # the account exists from its first login
    await owner.aclose()

    def send(data: bytes) -> tuple[int, bytes]:
        with smtplib.SMTP(relay_server.host, relay_server.port("smtp"), timeout=30) as smtp:
            smtp.starttls(context=relay_server.ssl_client_context())
            smtp.ehlo("mx.example.org")
            try:
                smtp.sendmail("mailer-daemon@[192.0.2.1]", [bob], data)
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error
            return 250, b""

    for depth in (400, 10_000):
        code, text = await in_thread(send, nested_message(depth, 1 << 20))
        assert (code, text) == (
            554,
            f"5.6.0 Message structure too complex: MIME nesting deeper than {mime.MAX_DEPTH}"
            " levels".encode(),
        )
    code, _ = await in_thread(send, nested_message(20, 4096))
    assert code == 250  # a report nested within the limit still gets through
