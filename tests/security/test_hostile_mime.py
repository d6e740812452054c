"""A deeply nested message cannot stall the relay: while one session FETCHes its structure,
another session's NOOP is answered at once, and on port 25 such a message is refused."""

from __future__ import annotations

import smtplib

import trio

from relay import mime
from tests.helpers import RelayServer, nested_message
from tests.imap.util import PASSWORD, RawClient, in_thread, new_addr

NOOP_WITHIN = 0.2  # seconds: what the issue asks of the event loop under hostile input


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
    relay_server: RelayServer,
) -> None:
    owner = await logged_in(relay_server, new_addr(relay_server))
    await append(owner, nested_message(400, 1 << 20))
    await append(owner, nested_message(10_000, 1 << 20))
    (*_, ok) = await owner.command(b"c SELECT INBOX\r\n")
    assert ok.startswith(b"c OK")
    other = await logged_in(relay_server, new_addr(relay_server))

    noop_times: list[float] = []
    fetched: list[list[bytes]] = []

    async def fetch_repeatedly() -> None:
        for i in range(3):
            tag = b"f%d" % i
            fetched.append(
                await owner.command(tag + b" FETCH 1:2 (BODYSTRUCTURE ENVELOPE BODY[1.1])\r\n", 60)
            )

    async def noop_meanwhile(done: trio.Event) -> None:
        while not done.is_set():
            start = trio.current_time()
            (ok,) = await other.command(b"n NOOP\r\n")
            noop_times.append(trio.current_time() - start)
            assert ok.startswith(b"n OK")
            await trio.sleep(0.01)

    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(noop_meanwhile, done)
        await fetch_repeatedly()
        done.set()

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
    assert len(noop_times) >= 3
    assert max(noop_times) < NOOP_WITHIN, f"NOOP took up to {max(noop_times) * 1000:.0f} ms"


async def test_a_deep_structure_is_refused_on_port_25(relay_server: RelayServer) -> None:
    bob = new_addr(relay_server)
    owner = await logged_in(relay_server, bob)  # the account exists from its first login
    await owner.aclose()

    def send(data: bytes) -> tuple[int, bytes]:
        with smtplib.SMTP(relay_server.host, relay_server.port("smtp"), timeout=30) as smtp:
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
