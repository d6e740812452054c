"""Credentials from /new work at the first IMAP and SMTP login (the account is created then)."""

from __future__ import annotations

import imaplib
import smtplib

import pytest
import trio

from tests.web.client import HTTPClient

ROUNDS = 12  # passwords with punctuation exercise the clients' quoting


async def new_credentials(relay_server, count: int) -> list[tuple[str, str]]:
    client = await HTTPClient.connect(relay_server.host, relay_server.port("http"))
    found = []
    try:
        for _ in range(count):
            answer = (await client.request("POST", "/new")).json()
            found.append((answer["email"], answer["password"]))
            await trio.sleep(0.5)  # stay under the per-IP limit
    finally:
        await client.aclose()
    return found


def imap_login(relay_server, addr: str, password: str) -> None:
    ctx = relay_server.ssl_client_context()
    with imaplib.IMAP4_SSL(
        relay_server.host, relay_server.port("imaps"), ssl_context=ctx, timeout=10
    ) as imap:
        imap.login(addr, password)
        imap.select("INBOX")


def smtp_login(relay_server, addr: str, password: str) -> None:
    ctx = relay_server.ssl_client_context()
    with smtplib.SMTP_SSL(
        relay_server.host, relay_server.port("submissions"), context=ctx, timeout=10
    ) as smtp:
        smtp.login(addr, password)


async def test_credentials_log_in_over_imap_first(relay_server):
    for addr, password in await new_credentials(relay_server, ROUNDS // 2):
        with trio.fail_after(30):
            await trio.to_thread.run_sync(imap_login, relay_server, addr, password)
        with trio.fail_after(30):
            await trio.to_thread.run_sync(smtp_login, relay_server, addr, password)


async def test_credentials_log_in_over_smtp_first(relay_server):
    for addr, password in await new_credentials(relay_server, ROUNDS // 2):
        with trio.fail_after(30):
            await trio.to_thread.run_sync(smtp_login, relay_server, addr, password)
        assert await relay_server.app.store.account_exists(addr)
    # The first login fixed the password: another one does not get in.
    with trio.fail_after(30), pytest.raises(smtplib.SMTPAuthenticationError):
        await trio.to_thread.run_sync(smtp_login, relay_server, addr, password + "x")
