"""Limits on submission and connection hygiene, over real TLS with smtplib."""

from __future__ import annotations

import base64
import dataclasses
import smtplib

import pytest
import trio

from relay.config import Config
from relay.smtp import session
from relay.smtp.events import stuff
from tests.helpers import RelayServer, record_throttle_delays
from tests.smtp.session_helpers import (
    PASSWORD,
    create_accounts,
    encrypted,
    in_thread,
    inbox,
    logged_in,
)


@pytest.fixture
def relay_config(relay_config: Config, request: pytest.FixtureRequest) -> Config:
    """Small limits so that tests reach them quickly; a test may override more."""
    overrides = {
        "max_user_send_per_minute": 1,
        "max_user_send_burst_size": 3,
        "max_message_size": 20_000,
        **getattr(request, "param", {}),
    }
    limits = dataclasses.replace(relay_config.limits, **overrides)
    return dataclasses.replace(relay_config, limits=limits)


async def test_rate_limit_at_rcpt_after_burst(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")

    def run() -> list[object]:
        outcomes: list[object] = []
        with logged_in(relay_server, "alice0001") as client:
            for _ in range(5):
                try:
                    outcomes.append(client.sendmail(alice, [bob], encrypted(alice)))
                except smtplib.SMTPRecipientsRefused as e:
                    outcomes.append(e.recipients[bob])
                    client.rset()
        return outcomes

    outcomes = await in_thread(run)
    assert outcomes[:3] == [{}, {}, {}]
    for code, text in outcomes[3:]:
        assert code == 450
        assert text.startswith(f"4.7.1: Too much mail from <{alice}>, rate limited for".encode())
    assert len(await inbox(relay_server, bob)) == 3


async def test_size_limit(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")
    big = encrypted(alice, payload_size=30_000)

    def run() -> list[tuple[int, bytes]]:
        outcomes = []
        with logged_in(relay_server, "alice0001") as client:
            try:  # smtplib announces SIZE=, so MAIL is refused
                client.sendmail(alice, [bob], big)
            except smtplib.SMTPSenderRefused as e:
                outcomes.append((e.smtp_code, e.smtp_error))
            client.rset()
            client.mail(alice)  # without SIZE= the limit applies at the end of DATA
            client.rcpt(bob)
            outcomes.append(client.data(big))
        return outcomes

    assert await in_thread(run) == [
        (552, b"5.3.4 Message size exceeds fixed limit"),
        (552, b"5.3.4 Error: message file too big"),
    ]
    assert await inbox(relay_server, bob) == []


# ---- connection hygiene (raw sockets, so the timing and bytes are ours) ------------------


async def _tls_client(server: RelayServer, service: str = "submissions") -> trio.SSLStream:
    tcp = await trio.open_tcp_stream(server.host, server.port(service))
    stream = trio.SSLStream(tcp, server.ssl_client_context(), server_hostname=server.host)
    await stream.do_handshake()
    return stream


async def _read_replies(stream: trio.abc.Stream, count: int) -> list[bytes]:
    """Read until `count` final reply lines (code + space) have arrived."""
    buf = b""
    while True:
        lines = buf.split(b"\r\n")
        finals = [line for line in lines[:-1] if line[3:4] == b" "]
        if len(finals) >= count:
            return finals
        chunk = await stream.receive_some(65536)
        if not chunk:
            return finals
        buf += chunk


async def test_silent_client_is_disconnected_before_login(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session, "PRE_AUTH_TIMEOUT", 0.3)
    with trio.fail_after(10):
        stream = await _tls_client(relay_server)
        greeting, bye = await _read_replies(stream, 2)
        assert greeting.startswith(b"220 ")
        assert bye == b"421 4.4.2 127.0.0.1 Error: timeout exceeded"
        assert await stream.receive_some(100) == b""


async def test_logged_in_client_gets_the_longer_timeout(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session, "PRE_AUTH_TIMEOUT", 0.3)
    monkeypatch.setattr(session, "IDLE_TIMEOUT", 1.5)
    with trio.fail_after(10):
        stream = await _tls_client(relay_server)
        await stream.send_all(f"EHLO x\r\nAUTH PLAIN {_plain('alice0001')}\r\n".encode())
        replies = await _read_replies(stream, 3)
        assert replies[-1].startswith(b"235 ")
        start = trio.current_time()
        [bye] = await _read_replies(stream, 1)
        assert bye.startswith(b"421 4.4.2")
        assert trio.current_time() - start > 1.0


def _plain(local: str) -> str:
    return base64.b64encode(f"\0{local}@[127.0.0.1]\0{PASSWORD}".encode()).decode()


@pytest.mark.parametrize("relay_config", [{"max_connections_per_ip": 2}], indirect=True)
async def test_connections_per_ip_are_capped(relay_server: RelayServer) -> None:
    with trio.fail_after(30):
        first, second = await _tls_client(relay_server), await _tls_client(relay_server)
        for stream in (first, second):
            assert (await _read_replies(stream, 1))[0].startswith(b"220 ")
        third = await _tls_client(relay_server)
        assert await _read_replies(third, 1) == [
            b"421 4.7.0 Error: too many connections from your address"
        ]
        await first.aclose()
        # The slot is free once the relay has seen the close: wait for that, not for a time.
        while relay_server.app.admission.per_ip.count("127.0.0.1") > 1:
            await trio.sleep(0.01)
        fourth = await _tls_client(relay_server)
        assert (await _read_replies(fourth, 1))[0].startswith(b"220 ")


async def test_failed_logins_are_slowed_down(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = base64.b64encode(b"\0alice0001@[127.0.0.1]\0wrong-password").decode()
    await create_accounts(relay_server, "alice0001")
    delays = record_throttle_delays(monkeypatch)
    waited, durations = [], []
    with trio.fail_after(60):  # a backstop only
        stream = await _tls_client(relay_server)
        await stream.send_all(b"EHLO x\r\n")
        await _read_replies(stream, 2)
        for _ in range(6):
            before, start = len(delays), trio.current_time()
            await stream.send_all(f"AUTH PLAIN {bad}\r\n".encode())
            [reply] = await _read_replies(stream, 1)
            assert reply == b"535 5.7.8 Error: authentication failed: authentication failure"
            waited.append(delays[before:])
            durations.append(trio.current_time() - start)
    # The first four attempts are answered at once, then the delay doubles: 0.5 s, 1 s.
    assert waited == [[], [], [], [], [0.5], [1.0]]
    assert durations[4] >= 0.5 and durations[5] >= 1.0  # and the reply really waited for it


async def test_pipelined_transactions_on_one_connection(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")
    message = stuff(encrypted(alice))
    with trio.fail_after(10):
        stream = await _tls_client(relay_server)
        await stream.send_all(f"EHLO x\r\nAUTH PLAIN {_plain('alice0001')}\r\n".encode())
        await _read_replies(stream, 3)
        envelope = f"MAIL FROM:<{alice}>\r\nRCPT TO:<{bob}>\r\nDATA\r\n".encode()
        await stream.send_all(envelope)
        replies = await _read_replies(stream, 3)
        await stream.send_all(message + b".\r\n" + envelope)
        replies += await _read_replies(stream, 4)
        await stream.send_all(message + b".\r\nQUIT\r\n")
        replies += await _read_replies(stream, 2)
    assert [r[:3] for r in replies] == [b"250", b"250", b"354", b"250", b"250", b"250", b"354"] + [
        b"250",
        b"221",
    ]
    assert len(await inbox(relay_server, bob)) == 2


async def test_smuggled_message_is_refused(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")
    smuggled = (
        f"\n.\nMAIL FROM:<{alice}>\nRCPT TO:<{bob}>\nDATA\n".encode() + encrypted(alice) + b"\n.\n"
    )
    with trio.fail_after(10):
        stream = await _tls_client(relay_server)
        await stream.send_all(f"EHLO x\r\nAUTH PLAIN {_plain('alice0001')}\r\n".encode())
        await _read_replies(stream, 3)
        await stream.send_all(f"MAIL FROM:<{alice}>\r\nRCPT TO:<{bob}>\r\nDATA\r\n".encode())
        await _read_replies(stream, 3)
        await stream.send_all(encrypted(alice) + smuggled + b"\r\n.\r\nNOOP\r\n")
        assert await _read_replies(stream, 2) == [b"500 5.5.2 Invalid DATA", b"250 2.0.0 Ok"]
    assert await inbox(relay_server, bob) == []


async def test_starttls_ignores_pipelined_cleartext(relay_server: RelayServer) -> None:
    with trio.fail_after(10):
        tcp = await trio.open_tcp_stream(relay_server.host, relay_server.port("submission"))
        await _read_replies(tcp, 1)
        await tcp.send_all(b"EHLO x\r\nSTARTTLS\r\nNOOP\r\n")
        replies = await _read_replies(tcp, 2)
        assert replies[-1] == b"220 2.0.0 Ready to start TLS"
        stream = trio.SSLStream(tcp, relay_server.ssl_client_context(), server_hostname="x")
        await stream.do_handshake()
        await stream.send_all(b"MAIL FROM:<a@b>\r\n")
        # the NOOP sent in clear text got no reply; the first reply is to MAIL, and the
        # session starts over after TLS (EHLO needed again)
        assert await _read_replies(stream, 1) == [b"503 5.5.1 Error: send HELO/EHLO first"]
