"""Mail claiming to come from one of our own users never arrives from outside.

In LAN mode the domain is a literal ("[192.168.1.20]"), which has no DNS for DKIM keys, so the
origin check cannot ask for a signature; without this rule anyone on the network could hand
our port 25 or /mxdeliv a message "from" a local user (and with it an Autocrypt key).
"""

from __future__ import annotations

import smtplib

from tests.helpers import RelayServer
from tests.smtp.session_helpers import create_accounts, encrypted, in_thread, inbox, mx
from tests.web.client import fetch


async def test_port_25_refuses_a_from_address_of_our_own_domain(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")

    def run() -> tuple[int, bytes]:
        with mx(relay_server) as client:
            try:
                client.sendmail("x@remote.example", [bob], encrypted(alice))
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error
        return 250, b""

    code, _ = await in_thread(run)
    assert code >= 500
    assert await inbox(relay_server, bob) == []


async def test_mxdeliv_refuses_a_from_address_of_our_own_domain(relay_server: RelayServer) -> None:
    alice, bob = await create_accounts(relay_server, "alice0001", "bob000001")
    reply = await fetch(
        relay_server.host,
        relay_server.port("https"),
        "POST",
        "/mxdeliv",
        headers=[("X-Mail-From", alice), ("X-Mail-To", bob)],
        body=encrypted(alice),
        tls=relay_server.ssl_client_context(),
    )
    assert reply.status in (400, 403)
    assert await inbox(relay_server, bob) == []


async def test_another_lan_relay_may_still_send(relay_server: RelayServer) -> None:
    [bob] = await create_accounts(relay_server, "bob000001")

    def run() -> dict:
        with mx(relay_server) as client:
            return client.sendmail(
                "carol0001@[127.0.0.9]", [bob], encrypted("carol0001@[127.0.0.9]")
            )

    assert await in_thread(run) == {}
    assert len(await inbox(relay_server, bob)) == 1
