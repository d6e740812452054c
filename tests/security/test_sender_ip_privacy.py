"""The sender's IP address goes nowhere: a Delta Chat user on 127.0.0.2 signs up, submits (with
headers that name the address, as some clients add), logs in over IMAP and fails a login once;
their address must not be in the stored message, in the copy another relay receives, in any file
of either relay's data, nor (privacy.no_log) in any log line of SMTP, IMAP, HTTP or federation.
Without no_log the same run does log it: the client really came from there, and the log check
can see an address when there is one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import smtplib
import socket
import ssl
from pathlib import Path

import pytest
import trio

from relay.config import Privacy
from tests.federation.mail import encrypted
from tests.federation.pair import PASSWORD, Relay, relay_config, shared_ports

CLIENT_IP = "127.0.0.2"
A_IP, B_IP = "127.0.0.3", "127.0.0.4"


def submit_from(relay: Relay, sender: str, recipients: list[str], message: bytes) -> None:
    port, ctx = relay.config.listen.submissions, relay.client_context()
    with smtplib.SMTP_SSL(
        relay.host, port, context=ctx, timeout=30, source_address=(CLIENT_IP, 0)
    ) as smtp:
        with contextlib.suppress(smtplib.SMTPAuthenticationError):
            smtp.login(sender, PASSWORD + "-wrong")
        smtp.login(sender, PASSWORD)
        smtp.sendmail(sender, recipients, message)


def exchange_from(relay: Relay, service: str, request: bytes, tls: bool) -> bytes:
    """One request from CLIENT_IP; everything the server said until it closed (or 5 s)."""
    raw = socket.create_connection(
        (relay.host, getattr(relay.config.listen, service)),
        timeout=5,
        source_address=(CLIENT_IP, 0),
    )
    sock: socket.socket | ssl.SSLSocket = relay.client_context().wrap_socket(raw) if tls else raw
    said = b""
    with sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                said += chunk
        except (TimeoutError, ssl.SSLError, OSError):
            pass
    return said


def files_mentioning(data_dir: Path, needle: bytes) -> list[str]:
    return [str(p) for p in data_dir.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize("no_log", [True, False], ids=["no_log", "logging"])
async def test_the_senders_address_is_stored_sent_and_logged_nowhere(
    tmp_path: Path, nursery: trio.Nursery, no_log: bool
) -> None:
    ports = shared_ports([A_IP, B_IP])
    relays = []
    for name, ip in (("a", A_IP), ("b", B_IP)):
        config = relay_config(tmp_path / name, ip, ports)
        config = dataclasses.replace(config, privacy=Privacy(no_log=no_log))
        relay = Relay(config, log_level="debug")
        await relay.start(nursery)
        relays.append(relay)
    a, b = relays
    alice, carol, bob = a.address("alice1234"), a.address("carol1234"), b.address("bob123456")
    for relay, addr in ((a, alice), (a, carol), (b, bob)):
        await relay.account(addr)
    # As some clients (and webmails) send it: headers naming the address the message came from.
    named = f"Received: from [{CLIENT_IP}] by client\r\nX-Originating-IP: [{CLIENT_IP}]\r\n"
    message = named.encode() + encrypted(alice, [carol, bob], "where am I?")

    said = await trio.to_thread.run_sync(
        exchange_from,
        a,
        "http",
        b"POST /new HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        False,
    )
    assert said.startswith(b"HTTP/1.1 ")
    await trio.to_thread.run_sync(submit_from, a, alice, [carol, bob], message)
    [federated] = await b.wait_for_mail(bob, timeout=60)
    [stored] = await a.wait_for_mail(carol, timeout=60)
    imap = f"a LOGIN {carol} {PASSWORD}\r\nb SELECT INBOX\r\nc FETCH 1 BODY[]\r\nd LOGOUT\r\n"
    said = await trio.to_thread.run_sync(exchange_from, a, "imaps", imap.encode(), True)
    assert b"c OK" in said and b"where am I?" not in said  # encrypted, as sent

    needle = CLIENT_IP.encode()
    assert needle not in stored
    assert needle not in federated
    assert files_mentioning(a.config.data_dir, needle) == []
    assert files_mentioning(b.config.data_dir, needle) == []
    logs = a.log_stream.getvalue() + b.log_stream.getvalue()
    if no_log:
        assert [line for line in logs.splitlines() if CLIENT_IP in line] == []
    else:
        assert CLIENT_IP in logs  # the address was there to leak, and the check sees it
