"""Byte-level replay of a Delta Chat session (core 2.65, observed on the wire), COMPRESS included.

Each command is the one the core sends, in its order; each response is asserted as the core
would read it. Compression uses plain zlib with the client's usual settings, not the relay's
own wrapper, so both ends are independent implementations.
"""

from __future__ import annotations

import re

from tests.helpers import deliver_to
from tests.imap.util import PASSWORD, RawClient, ZlibStream, new_addr

PREFETCH_FIELDS = (
    b"MESSAGE-ID DATE X-MICROSOFT-ORIGINAL-MESSAGE-ID FROM CONTENT-TYPE SECURE-JOIN "
    b"CHAT-VERSION CHAT-IS-POST-MESSAGE AUTOCRYPT-SETUP-MESSAGE"
)
ENCRYPTED = (
    b"From: <sender01@example.org>\r\nTo: <receiver@example.org>\r\n"
    b"Message-ID: <dc-1@example.org>\r\nDate: Tue, 06 Feb 2024 09:00:00 +0000\r\n"
    b"Chat-Version: 1.0\r\nSubject: [...]\r\n"
    b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="B"\r\n'
    b"\r\n--B\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
    b"--B\r\nContent-Type: application/octet-stream\r\n\r\n"
    b"-----BEGIN PGP MESSAGE-----\r\n\r\nwV4D\r\n-----END PGP MESSAGE-----\r\n--B--\r\n"
)


def only(lines: list[bytes], pattern: bytes) -> list[bytes]:
    return [line for line in lines if re.match(pattern, line)]


async def test_delta_chat_session_replay(relay_server):
    addr = new_addr(relay_server, "dc")
    store = relay_server.app.store
    c = await RawClient.connect(relay_server)
    greeting = await c.read_line()
    assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")

    # 1. LOGIN; the capability list is read from the OK response.
    (ok,) = await c.command(f'A0001 LOGIN "{addr}" "{PASSWORD}"\r\n'.encode())
    caps = ok.split(b"[CAPABILITY ", 1)[1].split(b"]", 1)[0].split()
    assert ok.endswith(b"] Logged in\r\n")
    assert {b"IDLE", b"COMPRESS=DEFLATE", b"METADATA", b"QUOTA", b"ID", b"XCHATMAIL"} <= set(caps)

    # 2. ID, then COMPRESS DEFLATE; from here on both directions are deflated.
    lines = await c.command(b'A0002 ID ("name" "Delta Chat")\r\n')
    assert lines[0].startswith(b"* ID (") and lines[1] == b"A0002 OK ID completed.\r\n"
    assert await c.command(b"A0003 COMPRESS DEFLATE\r\n") == [b"A0003 OK Begin compression.\r\n"]
    c.stream = ZlibStream(c.stream)

    # 3. Quota.
    lines = await c.command(b'A0004 GETQUOTAROOT "INBOX"\r\n')
    assert lines[0] == b'* QUOTAROOT INBOX "User quota"\r\n'
    assert re.fullmatch(rb'\* QUOTA "User quota" \(STORAGE 0 \d+\)\r\n', lines[1])
    assert lines[2] == b"A0004 OK Getquotaroot completed.\r\n"

    # 4. Server metadata, once per session.
    lines = await c.command(
        b'A0005 GETMETADATA "" (/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay '
        b"/shared/vendor/deltachat/turn /shared/vendor/deltachat/maxsmtprecipients "
        b"/shared/vendor/deltachat/appversions)\r\n"
    )
    assert lines[0].startswith(b'* METADATA "" (/shared/comment ')
    assert b"/shared/vendor/deltachat/maxsmtprecipients {4}\r\n1000" in lines[0]
    assert lines[1] == b"A0005 OK Getmetadata completed.\r\n"

    # 5. The push token.
    token = b"openpgp:" + b"QUJD" * 100
    lines = await c.command(
        b'A0006 SETMETADATA "INBOX" (/private/devicetoken "' + token + b'")\r\n'
    )
    assert lines == [b"A0006 OK Setmetadata completed.\r\n"]

    # 6. SELECT and prefetch on an empty INBOX.
    lines = await c.command(b'A0007 SELECT "INBOX"\r\n')
    assert b"* 0 EXISTS\r\n" in lines
    assert (
        only(lines, rb"\* OK \[UIDVALIDITY \d+\]")
        and b"* OK [UIDNEXT 1] Predicted next UID\r\n" in lines
    )
    assert lines[-1] == b"A0007 OK [READ-WRITE] Select completed.\r\n"

    # 8. IDLE until a message arrives.
    await c.send(b"A0008 IDLE\r\n")
    assert await c.read_line() == b"+ idling\r\n"
    await deliver_to(store, [addr], ENCRYPTED)
    assert await c.read_line() == b"* 1 EXISTS\r\n"
    await c.send(b"DONE\r\n")
    assert await c.read_line() == b"A0008 OK Idle completed.\r\n"

    # 6 again: prefetch headers from UIDNEXT.
    lines = await c.command(
        b"A0009 UID FETCH 1:500 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS ("
        + PREFETCH_FIELDS
        + b")])\r\n"
    )
    header = (
        b"From: <sender01@example.org>\r\nMessage-ID: <dc-1@example.org>\r\n"
        b"Date: Tue, 06 Feb 2024 09:00:00 +0000\r\nChat-Version: 1.0\r\n"
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="B"\r\n\r\n'
    )
    assert lines[0] == (
        b"* 1 FETCH (UID 1 RFC822.SIZE %d BODY[HEADER.FIELDS (" % len(ENCRYPTED)
        + PREFETCH_FIELDS
        + b")] {%d}\r\n" % len(header)
        + header
        + b")\r\n"
    )
    assert lines[1] == b"A0009 OK Fetch completed.\r\n"

    # 7. Download, delete, CLOSE, SELECT again.
    lines = await c.command(b"A0010 UID FETCH 1 (FLAGS BODY.PEEK[])\r\n")
    assert (
        lines[0]
        == b"* 1 FETCH (UID 1 FLAGS () BODY[] {%d}\r\n" % len(ENCRYPTED) + ENCRYPTED + b")\r\n"
    )
    lines = await c.command(b"A0011 UID STORE 1 +FLAGS (\\Deleted)\r\n")
    assert lines == [b"* 1 FETCH (UID 1 FLAGS (\\Deleted))\r\n", b"A0011 OK Store completed.\r\n"]
    assert await c.command(b"A0012 CLOSE\r\n") == [b"A0012 OK Close completed.\r\n"]
    lines = await c.command(b'A0013 SELECT "INBOX"\r\n')
    assert b"* 0 EXISTS\r\n" in lines and b"* OK [UIDNEXT 2] Predicted next UID\r\n" in lines

    # 8 again: the next IDLE, then logout.
    await c.send(b"A0014 IDLE\r\n")
    assert await c.read_line() == b"+ idling\r\n"
    await deliver_to(store, [addr], ENCRYPTED)
    assert await c.read_line() == b"* 1 EXISTS\r\n"
    await c.send(b"DONE\r\n")
    assert await c.read_line() == b"A0014 OK Idle completed.\r\n"
    lines = await c.command(b"A0015 LOGOUT\r\n")
    assert lines == [b"* BYE Logging out.\r\n", b"A0015 OK Logout completed.\r\n"]
    await c.aclose()
