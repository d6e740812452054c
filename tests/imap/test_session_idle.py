"""IDLE over TLS: new mail, expunges and flag changes reach idling sessions at once."""

from __future__ import annotations

import trio

import relay.imap.idle
from tests.helpers import deliver_to
from tests.imap.util import RawClient, imapclient, in_thread, message, new_addr


async def _idling_client(relay, addr):
    def start():
        client = imapclient(relay, addr)
        client.select_folder("INBOX")
        client.idle()
        return client

    return await in_thread(start)


async def test_delivery_wakes_idle_with_exists(relay_server):
    addr = new_addr(relay_server)
    client = await _idling_client(relay_server, addr)
    await deliver_to(relay_server.app.store, [addr], message("one"))
    first = await in_thread(client.idle_check, 5)
    await deliver_to(relay_server.app.store, [addr], message("two"))
    second = await in_thread(client.idle_check, 5)
    await in_thread(client.idle_done)
    await in_thread(client.logout)
    assert (1, b"EXISTS") in first
    assert (2, b"EXISTS") in second


async def test_every_idle_session_of_the_account_is_woken(relay_server):
    addr = new_addr(relay_server)
    clients = [await _idling_client(relay_server, addr) for _ in range(3)]
    await deliver_to(relay_server.app.store, [addr], message())
    for client in clients:
        assert (1, b"EXISTS") in await in_thread(client.idle_check, 5)
        await in_thread(client.idle_done)
        await in_thread(client.logout)


async def test_expunge_and_flag_changes_from_another_session_reach_the_idler(relay_server):
    addr = new_addr(relay_server)
    await in_thread(lambda: imapclient(relay_server, addr).logout())
    for i in range(2):
        await deliver_to(relay_server.app.store, [addr], message(str(i)))
    idler = await _idling_client(relay_server, addr)

    def other_session():
        client = imapclient(relay_server, addr)
        client.select_folder("INBOX")
        client.add_flags([2], [b"\\Seen"])
        client.add_flags([1], [b"\\Deleted"])
        client.expunge()
        client.logout()

    await in_thread(other_session)
    seen: list = []
    with trio.fail_after(10):
        while (1, b"EXPUNGE") not in seen or not any(r[1] == b"FETCH" for r in seen):
            seen += await in_thread(idler.idle_check, 5)
    await in_thread(idler.idle_done)
    await in_thread(idler.logout)
    fetch = next(r for r in seen if r[1] == b"FETCH")
    assert fetch[0] == 2 and b"\\Seen" in fetch[2][fetch[2].index(b"FLAGS") + 1]
    assert seen.index(fetch) < seen.index((1, b"EXPUNGE"))


async def test_keepalive_while_idle(relay_server, monkeypatch):
    monkeypatch.setattr(relay.imap.idle, "KEEPALIVE_INTERVAL", 0.2)
    addr = new_addr(relay_server)
    client = await _idling_client(relay_server, addr)
    responses = await in_thread(client.idle_check, 5)
    await in_thread(client.idle_done)
    await in_thread(client.logout)
    assert (b"OK", b"Still here") in responses


async def test_done_ends_idle_and_a_wrong_word_is_bad(relay_server):
    addr = new_addr(relay_server)
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"a1 LOGIN {addr} correct-horse-1\r\n".encode())
    await client.command(b"a2 SELECT INBOX\r\n")
    await client.send(b"a3 IDLE\r\n")
    assert await client.read_line() == b"+ idling\r\n"
    await deliver_to(relay_server.app.store, [addr], message())
    assert await client.read_line() == b"* 1 EXISTS\r\n"
    await client.send(b"DONE\r\n")
    assert await client.read_line() == b"a3 OK Idle completed.\r\n"
    await client.send(b"a4 IDLE\r\n")
    assert await client.read_line() == b"+ idling\r\n"
    await client.send(b"a5 NOOP\r\n")
    assert (await client.read_line()).startswith(b"a4 BAD")
    await client.aclose()


async def test_new_mail_is_announced_on_noop_without_idle(relay_server):
    addr = new_addr(relay_server)
    client = await RawClient.connect(relay_server)
    await client.read_line()
    await client.command(f"a1 LOGIN {addr} correct-horse-1\r\n".encode())
    await client.command(b"a2 SELECT INBOX\r\n")
    await deliver_to(relay_server.app.store, [addr], message())
    lines = await client.command(b"a3 NOOP\r\n")
    assert lines == [b"* 1 EXISTS\r\n", b"a3 OK NOOP completed.\r\n"]
    await client.aclose()


async def test_idle_before_select_waits_quietly_and_ends_on_done(relay_server, monkeypatch):
    """No mailbox selected: a change has nothing to report, and the session waits on (it does
    not spin: other clients are answered), sends its keep-alives and ends on DONE."""
    monkeypatch.setattr(relay.imap.idle, "KEEPALIVE_INTERVAL", 0.2)
    addr = new_addr(relay_server)

    def start():
        client = imapclient(relay_server, addr)
        client.idle()
        return client

    idler = await in_thread(start)
    await deliver_to(relay_server.app.store, [addr], message())
    with trio.fail_after(10):
        other = await in_thread(imapclient, relay_server, new_addr(relay_server))
        await in_thread(other.noop)
        responses = await in_thread(idler.idle_check, 5)
        await in_thread(idler.idle_done)
        assert await in_thread(idler.select_folder, "INBOX")
    assert (b"OK", b"Still here") in responses
    await in_thread(idler.logout)
    await in_thread(other.logout)


async def test_a_burst_of_mail_is_announced_to_the_end(relay_server):
    """Changes that arrive while the session writes the last ones are reported too."""
    addr = new_addr(relay_server)
    client = await _idling_client(relay_server, addr)
    async with trio.open_nursery() as nursery:
        for i in range(40):
            nursery.start_soon(deliver_to, relay_server.app.store, [addr], message(str(i)))
    highest = 0
    with trio.fail_after(10):
        while highest < 40:
            for number, kind in await in_thread(client.idle_check, 5):
                if kind == b"EXISTS":
                    highest = max(highest, number)
    await in_thread(client.idle_done)
    await in_thread(client.logout)
    assert highest == 40
