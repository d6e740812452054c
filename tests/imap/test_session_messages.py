"""FETCH, STORE, SEARCH, COPY, MOVE and EXPUNGE with imapclient (and raw bytes where the
exact form matters)."""

from __future__ import annotations

from datetime import date

from tests.helpers import deliver_to
from tests.imap.util import RawClient, imapclient, in_thread, message, new_addr

MULTIPART = (
    b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>, carl@example.org\r\n"
    b"Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <mp1@example.org>\r\n"
    b"Date: Tue, 06 Feb 2024 09:00:00 +0100\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="BOUND"\r\n\r\n'
    b"preamble\r\n--BOUND\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nfirst part\r\n"
    b"--BOUND\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
    b'Content-Disposition: attachment; filename="a.bin"\r\n\r\nAAECAw==\r\n--BOUND--\r\n'
)


async def _account_with(relay, *messages: bytes) -> str:
    addr = new_addr(relay)
    await in_thread(lambda: imapclient(relay, addr).logout())
    for data in messages:
        await deliver_to(relay.app.store, [addr], data)
    return addr


async def test_fetch_metadata_headers_and_bodies(relay_server):
    plain = message("plain one", "hello world")
    addr = await _account_with(relay_server, plain, MULTIPART)

    def session():
        client = imapclient(relay_server, addr)
        client.select_folder("INBOX")
        result = client.fetch(
            [1, 2],
            [
                "UID",
                "FLAGS",
                "RFC822.SIZE",
                "INTERNALDATE",
                "ENVELOPE",
                "BODYSTRUCTURE",
                "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]",
                "BODY.PEEK[TEXT]",
                "BODY.PEEK[1]",
                "BODY.PEEK[2.MIME]",
                "BODY.PEEK[]<0.10>",
            ],
        )
        after = client.get_flags([1, 2])
        client.logout()
        return result, after

    result, after = await in_thread(session)
    one, two = result[1], result[2]
    assert one[b"SEQ"] == 1 and one[b"RFC822.SIZE"] == len(plain)
    assert one[b"BODY[HEADER.FIELDS (SUBJECT FROM)]"] == (
        b"From: Alice <a@example.org>\r\nSubject: plain one\r\n\r\n"
    )
    assert one[b"BODY[TEXT]"] == b"hello world\r\n"
    assert one[b"BODY[1]"] == b"hello world\r\n"
    assert one[b"BODY[]<0>"] == plain[:10]
    envelope = two[b"ENVELOPE"]
    assert envelope.subject == b"=?utf-8?q?gr=C3=BC=C3=9Fe?="
    assert envelope.from_[0].mailbox == b"alice" and envelope.from_[0].host == b"example.org"
    assert [a.mailbox for a in envelope.to] == [b"bob", b"carl"]
    assert envelope.message_id == b"<mp1@example.org>"
    structure = two[b"BODYSTRUCTURE"]
    assert structure.is_multipart
    assert two[b"BODY[1]"] == b"first part"
    assert two[b"BODY[2.MIME]"].startswith(b"Content-Type: application/octet-stream")
    assert after == {1: (), 2: ()}  # PEEK leaves \Seen alone


async def test_fetch_without_peek_sets_seen_and_reports_it(relay_server):
    addr = await _account_with(relay_server, message())
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"a1 LOGIN {addr} correct-horse-1\r\n".encode())
    await client.command(b"a2 SELECT INBOX\r\n")
    lines = await client.command(b"a3 UID FETCH 1 (BODY[HEADER.FIELDS (SUBJECT)])\r\n")
    assert lines[0] == (
        b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: hello\r\n\r\n"
        b" FLAGS (\\Seen))\r\n"
    )
    await client.aclose()


async def test_store_flag_forms_and_silent(relay_server):
    addr = await _account_with(relay_server, message("a"), message("b"), message("c"))
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"a1 LOGIN {addr} correct-horse-1\r\n".encode())
    await client.command(b"a2 SELECT INBOX\r\n")
    lines = await client.command(b"a3 STORE 1:2 +FLAGS (\\Seen $Important)\r\n")
    assert lines[:2] == [
        b"* 1 FETCH (FLAGS (\\Seen $Important))\r\n",
        b"* 2 FETCH (FLAGS (\\Seen $Important))\r\n",
    ]
    lines = await client.command(b"a4 UID STORE 2 -FLAGS.SILENT ($Important)\r\n")
    assert lines == [b"a4 OK Store completed.\r\n"]
    lines = await client.command(b"a5 UID STORE 3 FLAGS (\\Flagged)\r\n")
    assert lines[0] == b"* 3 FETCH (UID 3 FLAGS (\\Flagged))\r\n"
    lines = await client.command(b"a6 FETCH 1:* (FLAGS)\r\n")
    assert lines[:3] == [
        b"* 1 FETCH (FLAGS (\\Seen $Important))\r\n",
        b"* 2 FETCH (FLAGS (\\Seen))\r\n",
        b"* 3 FETCH (FLAGS (\\Flagged))\r\n",
    ]
    (bad,) = await client.command(b"a7 STORE 9 +FLAGS (\\Seen)\r\n")
    assert bad.startswith(b"a7 BAD")
    await client.command(b"a8 EXAMINE INBOX\r\n")
    (refused,) = await client.command(b"a9 STORE 1 +FLAGS (\\Deleted)\r\n")
    assert refused.startswith(b"a9 NO")
    await client.aclose()


async def test_search_keys_delta_chat_and_thunderbird_use(relay_server):
    addr = await _account_with(
        relay_server,
        message("first", sender="x@example.org"),
        message("second", "needle in body"),
        MULTIPART,
    )

    def session():
        client = imapclient(relay_server, addr)
        client.select_folder("INBOX")
        client.add_flags([1], [b"\\Seen"])
        client.add_flags([2], [b"\\Deleted"])
        found = {
            "all": client.search("ALL"),
            "seen": client.search("SEEN"),
            "unseen": client.search("UNSEEN"),
            "deleted": client.search("DELETED"),
            "header": client.search(["HEADER", "Chat-Version", "1.0"]),
            "from": client.search(["FROM", "x@example.org"]),
            "body": client.search(["BODY", "needle"]),
            "since": client.search(["SINCE", date(2000, 1, 1)]),
            "before": client.search(["BEFORE", date(2000, 1, 1)]),
            "uid": client.search(["UID", "2:*"]),
            "or_not": client.search(["OR", "SEEN", "NOT", "UNDELETED"]),
            "sentsince": client.search(["SENTSINCE", date(2024, 2, 6)]),
        }
        client.logout()
        return found

    found = await in_thread(session)
    assert found["all"] == [1, 2, 3]
    assert found["seen"] == [1] and found["unseen"] == [2, 3] and found["deleted"] == [2]
    assert found["header"] == [1, 2] and found["from"] == [1] and found["body"] == [2]
    assert found["since"] == [1, 2, 3] and found["before"] == []
    assert found["uid"] == [2, 3] and found["or_not"] == [1, 2]
    assert found["sentsince"] == [3]


async def test_copy_and_move_report_copyuid_and_expunges(relay_server):
    addr = await _account_with(relay_server, message("a"), message("b"), message("c"))
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"a1 LOGIN {addr} correct-horse-1\r\n".encode())
    await client.command(b"a2 CREATE Archive\r\n")
    await client.command(b"a3 SELECT INBOX\r\n")
    (copied,) = await client.command(b"a4 UID COPY 1:2 Archive\r\n")
    assert copied.startswith(b"a4 OK [COPYUID ") and copied.endswith(
        b" 1:2 1:2] Copy completed.\r\n"
    )
    moved = await client.command(b"a5 MOVE 2 Archive\r\n")
    assert moved[0].startswith(b"* OK [COPYUID ") and b" 2 3]" in moved[0]
    assert moved[1] == b"* 2 EXPUNGE\r\n"
    assert moved[2] == b"a5 OK Move completed.\r\n"
    (missing,) = await client.command(b"a6 COPY 1 Nowhere\r\n")
    assert missing.startswith(b"a6 NO [TRYCREATE]")
    status = await client.command(b"a7 STATUS Archive (MESSAGES)\r\n")
    assert status[0] == b"* STATUS Archive (MESSAGES 3)\r\n"
    await client.aclose()


async def test_expunge_uid_expunge_and_close(relay_server):
    addr = await _account_with(relay_server, *(message(str(i)) for i in range(5)))
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"a1 LOGIN {addr} correct-horse-1\r\n".encode())
    await client.command(b"a2 SELECT INBOX\r\n")
    await client.command(b"a3 STORE 1:4 +FLAGS.SILENT (\\Deleted)\r\n")
    lines = await client.command(b"a4 UID EXPUNGE 1:2\r\n")
    assert lines == [b"* 2 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n", b"a4 OK Expunge completed.\r\n"]
    lines = await client.command(b"a5 EXPUNGE\r\n")
    assert lines == [b"* 2 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n", b"a5 OK Expunge completed.\r\n"]
    await client.command(b"a6 STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
    (closed,) = await client.command(b"a7 CLOSE\r\n")
    assert closed == b"a7 OK Close completed.\r\n"  # CLOSE expunges without responses
    lines = await client.command(b"a8 SELECT INBOX\r\n")
    assert b"* 0 EXISTS\r\n" in lines
    (unselected,) = await client.command(b"a9 UNSELECT\r\n")
    assert unselected.startswith(b"a9 OK")
    await client.aclose()


async def test_condstore_modseq_and_changedsince(relay_server):
    addr = await _account_with(relay_server, message("a"), message("b"))
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"a1 LOGIN {addr} correct-horse-1\r\n".encode())
    selected = await client.command(b"a2 SELECT INBOX (CONDSTORE)\r\n")
    highest = next(line for line in selected if b"HIGHESTMODSEQ" in line)
    modseq = int(highest.split(b"HIGHESTMODSEQ ")[1].split(b"]")[0])
    await client.command(b"a3 UID STORE 2 +FLAGS.SILENT (\\Seen)\r\n")
    lines = await client.command(b"a4 UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)\r\n" % modseq)
    assert len(lines) == 2 and lines[0].startswith(b"* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (")
    await client.aclose()
