"""smtplib clients for a relay running in the test's trio loop (smtplib runs in a thread)."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from typing import TypeVar

import trio

from tests.helpers import RelayServer, make_account
from tests.policy.corpus import armor, crlf, pgp_mime, pkesk_v6, seipd_v2

T = TypeVar("T")
PASSWORD = "correct-horse-1"


async def in_thread(fn: Callable[[], T], timeout: float = 30) -> T:
    with trio.fail_after(timeout):
        return await trio.to_thread.run_sync(fn)


def addr(server: RelayServer, local: str) -> str:
    return f"{local}@{server.domain}"


def smtps(server: RelayServer) -> smtplib.SMTP_SSL:
    return smtplib.SMTP_SSL(
        server.host, server.port("submissions"), context=server.ssl_client_context(), timeout=10
    )


def submission(server: RelayServer, *, tls: bool = True) -> smtplib.SMTP:
    client = smtplib.SMTP(server.host, server.port("submission"), timeout=10)
    client.ehlo("[127.0.0.1]")
    if tls:
        client.starttls(context=server.ssl_client_context())
        client.ehlo("[127.0.0.1]")
    return client


def mx(server: RelayServer) -> smtplib.SMTP:
    client = smtplib.SMTP(server.host, server.port("smtp"), timeout=10)
    client.ehlo("remote.example")
    client.starttls(context=server.ssl_client_context())
    client.ehlo("remote.example")
    return client


def logged_in(server: RelayServer, local: str, password: str = PASSWORD) -> smtplib.SMTP_SSL:
    client = smtps(server)
    client.login(addr(server, local), password)
    return client


def encrypted(sender: str, *, payload_size: int = 100, epilogue: str = "") -> bytes:
    """A PGP/MIME message shaped like Delta Chat's (synthetic v6 PKESK + SEIPD v2 packets)."""
    message = pgp_mime(armor(pkesk_v6() + seipd_v2(payload_size)), sender=sender)
    return message + crlf(epilogue)


def plain(sender: str, recipient: str, subject: str = "hello") -> bytes:
    return crlf(f"From: <{sender}>\nTo: <{recipient}>\nSubject: {subject}\n\nHi there\n")


async def create_accounts(server: RelayServer, *locals_: str) -> list[str]:
    addresses = [addr(server, local) for local in locals_]
    for address in addresses:
        assert await make_account(server.app.store, address, PASSWORD)
    return addresses


async def inbox(server: RelayServer, address: str) -> list[bytes]:
    store = server.app.store
    snapshot = await store.snapshot(address, "INBOX")
    return [await store.read(address, "INBOX", m.uid) for m in snapshot.messages]
