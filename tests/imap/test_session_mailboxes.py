"""Mailbox commands with imapclient over TLS: folders as Thunderbird makes them, STATUS, APPEND."""

from __future__ import annotations

from datetime import UTC, datetime

from imapclient.exceptions import IMAPClientError

from tests.helpers import deliver_to
from tests.imap.util import RawClient, imapclient, in_thread, message, new_addr


async def test_select_reports_uidvalidity_uidnext_exists_and_flags(relay_server):
    addr = new_addr(relay_server)
    await in_thread(lambda: imapclient(relay_server, addr).logout())
    for i in range(3):
        await deliver_to(relay_server.app.store, [addr], message(f"m{i}"))

    def session():
        client = imapclient(relay_server, addr)
        selected = client.select_folder("INBOX")
        examined = client.select_folder("inbox", readonly=True)
        client.logout()
        return selected, examined

    selected, examined = await in_thread(session)
    assert selected[b"EXISTS"] == 3
    assert selected[b"UIDNEXT"] == 4
    assert selected[b"UIDVALIDITY"] > 0
    assert b"\\Seen" in selected[b"FLAGS"] and b"\\*" in selected[b"PERMANENTFLAGS"]
    assert selected[b"READ-WRITE"]
    assert examined[b"READ-ONLY"] and examined[b"EXISTS"] == 3


async def test_folders_can_be_created_listed_renamed_subscribed_and_deleted(relay_server):
    addr = new_addr(relay_server)

    def session():
        client = imapclient(relay_server, addr)
        client.create_folder("Sent")
        client.create_folder("Archive/2024")
        before = {name for _, _, name in client.list_folders()}
        client.rename_folder("Archive/2024", "Archive/Old")
        client.subscribe_folder("Sent")
        subscribed = {name for _, _, name in client.list_sub_folders()}
        client.unsubscribe_folder("Sent")
        unsubscribed = {name for _, _, name in client.list_sub_folders()}
        client.delete_folder("Archive/Old")
        after = {name for _, _, name in client.list_folders()}
        pattern = {name for _, _, name in client.list_folders("", "%")}
        try:
            client.select_folder("Nope")
            missing = "selected"
        except IMAPClientError as e:
            missing = str(e)
        client.logout()
        return before, subscribed, unsubscribed, after, pattern, missing

    before, subscribed, unsubscribed, after, pattern, missing = await in_thread(session)
    assert {"INBOX", "Sent", "Archive/2024"} <= before
    assert "Sent" in subscribed and "Sent" not in unsubscribed
    assert "Archive/Old" not in after and "Sent" in after
    assert "Archive/2024" not in pattern and "INBOX" in pattern
    assert "NONEXISTENT" in missing or "exist" in missing


async def test_list_delimiter_and_special_use(relay_server):
    addr = new_addr(relay_server)
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"a1 LOGIN {addr} correct-horse-1\r\n".encode())
    lines = await client.command(b'a2 LIST "" ""\r\n')
    assert lines[0] == b'* LIST (\\Noselect) "/" ""\r\n'
    lines = await client.command(b'a3 LIST "" "*"\r\n')
    assert any(b'"/" INBOX' in line for line in lines)
    await client.aclose()


async def test_status_counts_messages_and_unseen(relay_server):
    addr = new_addr(relay_server)
    await in_thread(lambda: imapclient(relay_server, addr).logout())
    await deliver_to(relay_server.app.store, [addr], message("one"))
    await deliver_to(relay_server.app.store, [addr], message("two"))

    def session():
        client = imapclient(relay_server, addr)
        client.select_folder("INBOX")
        client.add_flags([1], [b"\\Seen"])
        status = client.folder_status(
            "INBOX", ["MESSAGES", "UNSEEN", "UIDNEXT", "UIDVALIDITY", "RECENT"]
        )
        client.logout()
        return status

    status = await in_thread(session)
    assert status[b"MESSAGES"] == 2 and status[b"UNSEEN"] == 1 and status[b"UIDNEXT"] == 3
    assert status[b"RECENT"] == 0


async def test_append_returns_appenduid_and_keeps_flags_and_date(relay_server):
    addr = new_addr(relay_server)
    data = message("appended")
    when = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)

    def session():
        client = imapclient(relay_server, addr)
        client.normalise_times = False  # keep the server's zone: compare instants exactly
        client.create_folder("Drafts")
        result = client.append("Drafts", data, flags=[b"\\Draft", b"\\Seen"], msg_time=when)
        client.select_folder("Drafts")
        fetched = client.fetch([1], ["FLAGS", "INTERNALDATE", "RFC822", "UID"])
        try:
            client.append("Missing", data)
            missing = ""
        except IMAPClientError as e:
            missing = str(e)
        client.logout()
        return result, fetched, missing

    result, fetched, missing = await in_thread(session)
    assert result.startswith(b"[APPENDUID ")
    (item,) = fetched.values()
    assert item[b"RFC822"] == data
    assert set(item[b"FLAGS"]) == {b"\\Draft", b"\\Seen"}
    assert item[b"INTERNALDATE"] == when
    assert "TRYCREATE" in missing


async def test_append_to_the_selected_mailbox_announces_exists_before_ok(relay_server):
    addr = new_addr(relay_server)
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"a1 LOGIN {addr} correct-horse-1\r\n".encode())
    await client.command(b"a2 SELECT INBOX\r\n")
    data = message("mine")
    lines = await client.command(b"a3 APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
    assert lines[0] == b"* 1 EXISTS\r\n"
    assert lines[-1].startswith(b"a3 OK [APPENDUID ")
    await client.aclose()


async def test_append_larger_than_max_message_size_is_refused(relay_server):
    addr = new_addr(relay_server)
    limit = relay_server.config.limits.max_message_size
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"a1 LOGIN {addr} correct-horse-1\r\n".encode())
    (refused,) = await client.command(b"a2 APPEND INBOX {%d}\r\n" % (limit + 1))
    assert refused.startswith(b"a2 NO [TOOBIG]")
    (ok,) = await client.command(b"a3 NOOP\r\n")
    assert ok.startswith(b"a3 OK")
    await client.aclose()
