"""Failed logins are counted across IMAP and SMTP: switching protocol buys no extra guesses."""

from __future__ import annotations

import base64

import trio

from relay.ratelimit import AuthThrottle
from tests.helpers import RelayServer
from tests.imap.util import RawClient
from tests.smtp.session_helpers import PASSWORD, create_accounts


async def _smtp_auth(server: RelayServer, addr: str, password: str) -> bytes:
    plain = base64.b64encode(f"\0{addr}\0{password}".encode()).decode()
    with trio.fail_after(10):
        stream = await trio.open_ssl_over_tcp_stream(
            server.host, server.port("submissions"), ssl_context=server.ssl_client_context()
        )
        await stream.send_all(f"EHLO x\r\nAUTH PLAIN {plain}\r\nQUIT\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(4096):
            data += chunk
    return [line for line in data.split(b"\r\n") if line[:3] in (b"235", b"454", b"535")][0]


async def test_imap_failures_lock_out_smtp_and_back(relay_server: RelayServer) -> None:
    relay_server.app.auth_throttle = AuthThrottle(free_failures=0, base_delay=0.01, lockout_after=3)
    [alice] = await create_accounts(relay_server, "alice0001")
    client = await RawClient.connect(relay_server)
    await client.read_line()
    for i in range(3):
        [reply] = await client.command(f"a{i} LOGIN {alice} wrong-password-1\r\n".encode())
        assert b"NO [AUTHENTICATIONFAILED]" in reply
    # The right password over SMTP is refused while the account is locked out.
    assert (await _smtp_auth(relay_server, alice, PASSWORD)).startswith(b"454 ")
    [reply] = await client.command(f"b LOGIN {alice} {PASSWORD}\r\n".encode())
    assert b"NO [AUTHENTICATIONFAILED]" in reply
    await client.aclose()
