"""Slowloris: a client that trickles bytes must still be cut off by the per-command timeout."""

from __future__ import annotations

import pytest
import trio

import relay.imap.session
import relay.smtp.session
from tests.helpers import RelayServer, make_account
from tests.smtp.test_enhanced_codes import connect


async def _trickle_until_closed(stream: trio.abc.Stream, byte: bytes, every: float) -> bytes:
    """Send `byte` every `every` seconds; return what the server said once it hung up.

    A reset (our byte hit the closed socket) also counts as hung up."""
    received = bytearray()
    while True:
        with trio.move_on_after(every):
            try:
                data = await stream.receive_some(4096)
            except trio.BrokenResourceError:
                return bytes(received)
            if not data:
                return bytes(received)
            received += data
            continue
        try:
            await stream.send_all(byte)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return bytes(received)


@pytest.mark.parametrize("service", ["smtp", "submission"])
async def test_smtp_trickled_command_line_is_cut_off(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch, service: str
) -> None:
    monkeypatch.setattr(relay.smtp.session, "PRE_AUTH_TIMEOUT", 1.0)
    monkeypatch.setattr(relay.smtp.session, "IDLE_TIMEOUT", 1.0)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(relay_server.host, relay_server.port(service))
        said = await _trickle_until_closed(stream, b"N", every=0.2)
    assert said.startswith(b"220 ")
    assert b"421 4.4.2" in said


async def test_smtp_trickled_data_is_cut_off_long_before_the_command_deadline(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay.smtp.session, "DATA_GRACE", 1.0)  # the command has 300 s
    rcpt = f"bob000001@{relay_server.domain}"
    assert await make_account(relay_server.app.store, rcpt, "correct-horse-1")
    with trio.fail_after(10):
        stream = (await connect(relay_server, "smtp", [], hello=None)).stream  # after STARTTLS
        await stream.send_all(
            f"EHLO peer.example\r\nMAIL FROM:<a@peer.example>\r\nRCPT TO:<{rcpt}>\r\n"
            "DATA\r\n".encode()
        )
        said = await _trickle_until_closed(stream, b"x", every=0.2)
    assert b"354 " in said
    assert said.endswith(b" Error: timeout exceeded\r\n")


async def test_imap_trickled_command_line_is_cut_off(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay.imap.session, "PREAUTH_TIMEOUT", 1.0)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(relay_server.host, relay_server.port("imap"))
        said = await _trickle_until_closed(stream, b"a", every=0.2)
    assert said.startswith(b"* OK")
    assert said.endswith(b"* BYE Disconnected for inactivity.\r\n")


async def test_imap_trickled_append_literal_is_cut_off_long_before_the_command_deadline(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay.imap.session, "LITERAL_GRACE", 1.0)
    addr = f"trickle01@{relay_server.domain}"
    assert await make_account(relay_server.app.store, addr, "correct-horse-1")
    with trio.fail_after(300):  # a backstop; the command itself would have 30 minutes
        stream = await trio.open_ssl_over_tcp_stream(
            relay_server.host,
            relay_server.port("imaps"),
            ssl_context=relay_server.ssl_client_context(),
        )
        await stream.send_all(f"a LOGIN {addr} correct-horse-1\r\n".encode())
        await stream.send_all(b"b APPEND INBOX {%d+}\r\n" % (8 * 1024 * 1024))
        start = trio.current_time()
        said = await _trickle_until_closed(stream, b"x" * 10, every=0.1)  # 100 bytes/s
    assert b"a OK" in said
    assert said.endswith(b"* BYE Disconnected for inactivity.\r\n")
    # Generous on purpose (LITERAL_GRACE is 1 s here): what matters is that the trickle is cut
    # off long before the 30 minutes a command may take, not how promptly.
    assert trio.current_time() - start < 120
    assert relay_server.app.body_budget.used == 0
