"""METADATA as the chatmail anchor's tests use it (bare LF, literals), server keys, QUOTA."""

from __future__ import annotations

import pytest

from relay.config import Privacy, Turn
from tests.helpers import deliver_to, make_config
from tests.imap.util import PASSWORD, RawClient, new_addr


@pytest.fixture
def relay_config(tmp_path):
    # the built-in TURN server off: its key is NIL here (tests/turn checks the minted value)
    return make_config(
        tmp_path / "data", privacy=Privacy(privacy_mail="privacy@example.org"), turn=Turn(port=0)
    )


async def _logged_in(relay) -> tuple[RawClient, str]:
    addr = new_addr(relay)
    client = await RawClient.connect(relay)
    await client.read_line()
    await client.command(f"x LOGIN {addr} {PASSWORD}\r\n".encode())
    return client, addr


async def test_devicetoken_set_adds_and_get_returns_all_as_a_literal(relay_server):
    client, _ = await _logged_in(relay_server)
    (ok,) = await client.command(b'a01 SETMETADATA INBOX (/private/devicetoken "1111" )\n')
    assert b"OK Setmetadata completed" in ok
    lines = await client.command(b"a02 GETMETADATA INBOX /private/devicetoken\n")
    assert lines == [
        b"* METADATA INBOX (/private/devicetoken {4}\r\n1111)\r\n",
        b"a02 OK Getmetadata completed.\r\n",
    ]
    await client.command(b'a03 SETMETADATA INBOX (/private/devicetoken "2222" )\n')
    await client.command(
        b'a04 SETMETADATA INBOX (/private/devicetoken "1111")\n'
    )  # known: kept once
    lines = await client.command(b"a05 GETMETADATA INBOX /private/devicetoken\n")
    assert lines[0] == b"* METADATA INBOX (/private/devicetoken {9}\r\n1111 2222)\r\n"
    await client.aclose()


async def test_devicetoken_survives_a_new_session_and_is_per_account(relay_server):
    client, addr = await _logged_in(relay_server)
    await client.command(b'a1 SETMETADATA "INBOX" (/private/devicetoken "openpgp:abc")\r\n')
    await client.aclose()
    again = await RawClient.connect(relay_server)
    await again.read_line()
    await again.command(f"b LOGIN {addr} {PASSWORD}\r\n".encode())
    lines = await again.command(b"a2 GETMETADATA INBOX /private/devicetoken\r\n")
    assert lines[0] == b"* METADATA INBOX (/private/devicetoken {11}\r\nopenpgp:abc)\r\n"
    await again.aclose()
    other, _ = await _logged_in(relay_server)
    lines = await other.command(b"a3 GETMETADATA INBOX /private/devicetoken\r\n")
    assert lines[0] == b"* METADATA INBOX (/private/devicetoken NIL)\r\n"
    await other.aclose()


async def test_server_keys_delta_chat_reads(relay_server):
    client, _ = await _logged_in(relay_server)
    lines = await client.command(
        b'A0005 GETMETADATA "" (/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay '
        b"/shared/vendor/deltachat/turn /shared/vendor/deltachat/maxsmtprecipients "
        b"/shared/vendor/deltachat/appversions)\r\n"
    )
    assert lines == [
        b'* METADATA "" (/shared/comment NIL /shared/admin {26}\r\nmailto:privacy@example.org '
        b"/shared/vendor/deltachat/irohrelay NIL /shared/vendor/deltachat/turn NIL "
        b"/shared/vendor/deltachat/maxsmtprecipients {4}\r\n1000 "
        b"/shared/vendor/deltachat/appversions NIL)\r\n",
        b"A0005 OK Getmetadata completed.\r\n",
    ]
    await client.aclose()


async def test_server_keys_and_unknown_entries_are_read_only(relay_server):
    client, _ = await _logged_in(relay_server)
    (refused,) = await client.command(b'a1 SETMETADATA "" (/shared/comment "hi")\r\n')
    assert refused.startswith(b"a1 NO")
    (refused,) = await client.command(b'a2 SETMETADATA INBOX (/private/other "x")\r\n')
    assert refused.startswith(b"a2 NO")
    await client.aclose()


async def test_getquotaroot_reports_usage_against_max_mailbox_size(relay_server):
    client, addr = await _logged_in(relay_server)
    await deliver_to(relay_server.app.store, [addr], b"Subject: x\r\n\r\n" + b"y" * 5000 + b"\r\n")
    limit_kib = relay_server.config.limits.max_mailbox_size // 1024
    lines = await client.command(b'A0004 GETQUOTAROOT "INBOX"\r\n')
    assert lines[0] == b'* QUOTAROOT INBOX "User quota"\r\n'
    used = int(lines[1].split(b"(STORAGE ")[1].split(b" ")[0])
    assert lines[1] == b'* QUOTA "User quota" (STORAGE %d %d)\r\n' % (used, limit_kib)
    assert 5 <= used <= 6
    assert lines[2] == b"A0004 OK Getquotaroot completed.\r\n"
    await client.aclose()
