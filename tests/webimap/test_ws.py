"""WebIMAP's WebSocket with a real client (the `websockets` package) and, where the test must
misbehave (never answer a ping, never read), a raw TLS socket speaking RFC 6455 by hand."""

from __future__ import annotations

import base64
import imaplib
import json
import os
import socket
import ssl
import struct
import time
from urllib.parse import urlencode

import pytest
import trio
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.helpers import client_context, deliver_to
from tests.webimap.conftest import LiveWebRelay, cleartext, encrypted
from tests.webimap.test_rest import imap_flags, wait_until

# -- a raw client -----------------------------------------------------------------------------


class RawWS:
    """The client side of RFC 6455 by hand: a handshake, then frames read one at a time."""

    def __init__(self, relay: LiveWebRelay, account: tuple[str, str], rcvbuf: int = 0) -> None:
        raw = socket.socket()
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(30)
        raw.connect((relay.host, relay.port("https")))
        self.sock: ssl.SSLSocket = client_context(relay.config).wrap_socket(
            raw, server_hostname=relay.host
        )
        query = urlencode({"email": account[0], "password": account[1]})
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /webimap/ws?{query} HTTP/1.1\r\nHost: {relay.host}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 "), head

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server (never masked)."""
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._exactly(8))
        return first & 0x0F, self._exactly(length)

    def close(self) -> None:
        self.sock.close()


PING, CLOSE, TEXT = 0x9, 0x8, 0x1


def status_of(refused: pytest.ExceptionInfo[InvalidStatus]) -> tuple[int, dict]:
    response = refused.value.response
    return response.status_code, json.loads(response.body)


# -- handshake ------------------------------------------------------------------------------


def test_handshake_refusals(relay: LiveWebRelay, account) -> None:
    with pytest.raises(InvalidStatus) as refused:
        relay.ws(("", ""))
    assert status_of(refused) == (401, {"error": "missing credentials"})
    with pytest.raises(InvalidStatus) as refused:
        relay.ws((account[0], "wrong-password-1"))
    assert status_of(refused) == (401, {"error": "authentication failed"})
    with pytest.raises(InvalidStatus) as refused:
        relay.ws(account, mailbox="Nowhere")
    assert status_of(refused)[0] == 404


@pytest.mark.webimap(enabled=False)
def test_no_websocket_while_webimap_is_off(relay: LiveWebRelay) -> None:
    with pytest.raises(InvalidStatus) as refused:
        relay.ws(relay.new_account())
    assert status_of(refused) == (404, {"error": "not found"})


def test_first_login_over_the_websocket_creates_the_account(relay: LiveWebRelay) -> None:
    account = relay.new_account()
    with relay.ws(account) as ws:
        assert [m["name"] for m in ws.result("list_mailboxes")] == ["INBOX"]
    assert relay.run(relay.app.store.account_exists, account[0])


# -- pushes ---------------------------------------------------------------------------------


def test_new_message_is_pushed_for_mail_sent_over_smtp(relay: LiveWebRelay, account) -> None:
    sender = relay.new_account()
    with relay.ws(account) as ws:
        ws.result("list_mailboxes")  # the socket is up and idle
        relay.smtp_send(sender, account[0], encrypted(sender[0], account[0], mid="pushed"))
        push = ws.next_push()
        assert set(push) == {"action", "data"}  # a push carries no req_id
        assert push["action"] == "new_message"
        assert push["data"]["uid"] == 1 and push["data"]["seq_num"] == 1
        assert push["data"]["envelope"]["message_id"] == "<pushed@localhost>"
        fetched = ws.result("fetch", {"uid": push["data"]["uid"]})
        assert "-----BEGIN PGP MESSAGE-----" in fetched["body"]


def test_pushes_start_after_since_uid(relay: LiveWebRelay, account) -> None:
    for n in range(3):
        relay.store_message(account[0], encrypted("x@example.org", account[0], f"no {n}"))
    with relay.ws(account, since_uid=2) as ws:
        assert ws.next_push()["data"]["uid"] == 3
        relay.store_message(account[0], encrypted("x@example.org", account[0], "later"))
        assert ws.next_push()["data"]["envelope"]["subject"] == "later"
    with relay.ws(account) as ws:  # since_uid=0: every message once, as madmail
        assert [ws.next_push()["data"]["uid"] for _ in range(4)] == [1, 2, 3, 4]


def test_a_watched_mailbox_other_than_inbox(relay: LiveWebRelay, account) -> None:
    relay.run(relay.app.store.create_mailbox, account[0], "DeltaChat")
    relay.store_message(account[0], encrypted("x@example.org", account[0], "in inbox"))
    with relay.ws(account, mailbox="DeltaChat") as ws:
        assert ws.result("copy", {"uid": 1, "dest_mailbox": "DeltaChat"}) == {"status": "copied"}
        push = ws.next_push()
        assert push["data"]["envelope"]["subject"] == "in inbox"


# -- actions --------------------------------------------------------------------------------


def test_every_action(relay: LiveWebRelay, account) -> None:
    rcpt = relay.new_account()
    with relay.ws(rcpt) as other:
        other.result("list_mailboxes")
    relay.store_message(account[0], encrypted("x@example.org", account[0], "first"))
    relay.store_message(account[0], encrypted("bob@example.org", account[0], "second"))
    with relay.ws(account, since_uid=2) as ws:
        assert [m["name"] for m in ws.result("list_mailboxes")] == ["INBOX"]
        assert [m["uid"] for m in ws.result("list_messages", {})] == [1, 2]
        assert [m["uid"] for m in ws.result("list_messages", {"since_uid": 1})] == [2]
        assert ws.result("list_messages", {"mailbox": "INBOX", "since_uid": 2}) == []

        detail = ws.result("fetch", {"mailbox": "INBOX", "uid": 1})
        assert detail["envelope"]["subject"] == "first" and "body" in detail

        assert ws.result("flags", {"uid": 1, "flags": ["\\Seen"], "op": "add"}) == {"status": "ok"}
        assert "\\Seen" in imap_flags(relay, account, 1)
        assert ws.result("flags", {"uid": 1, "flags": [], "op": "set"}) == {"status": "ok"}
        assert "\\Seen" not in imap_flags(relay, account, 1)

        assert [m["uid"] for m in ws.result("search", {"query": "SECOND"})] == [2]
        assert [m["uid"] for m in ws.result("search", {"query": "bob@example"})] == [2]
        assert ws.result("search", {"query": "nothing like it"}) == []

        assert ws.result("create_mailbox", {"name": "Archive"}) == {"status": "created"}
        assert ws.result("copy", {"uid": 1, "dest_mailbox": "Archive"}) == {"status": "copied"}
        assert ws.result("move", {"uid": 2, "dest_mailbox": "Archive"}) == {"status": "moved"}
        boxes = {m["name"]: m["messages"] for m in ws.result("list_mailboxes")}
        assert boxes == {"INBOX": 1, "Archive": 2}
        archived = ws.result("list_messages", {"mailbox": "Archive"})
        assert [m["envelope"]["subject"] for m in archived] == ["first", "second"]

        renamed = {"old_name": "Archive", "new_name": "Old"}
        assert ws.result("rename_mailbox", renamed) == {"status": "renamed"}
        assert ws.result("delete", {"mailbox": "Old", "uid": archived[0]["uid"]}) == {
            "status": "deleted"
        }
        assert len(ws.result("list_messages", {"mailbox": "Old"})) == 1
        assert ws.result("delete_mailbox", {"name": "Old"}) == {"status": "deleted"}
        assert [m["name"] for m in ws.result("list_mailboxes")] == ["INBOX"]

        body = encrypted(account[0], rcpt[0], mid="from-ws").decode()
        assert ws.result("send", {"to": [rcpt[0]], "body": body}) == {"status": "sent"}
    with relay.ws(rcpt) as other:
        assert other.next_push()["data"]["envelope"]["message_id"] == "<from-ws@localhost>"


def test_mailbox_changes_are_seen_over_imap(relay: LiveWebRelay, account) -> None:
    with relay.ws(account) as ws:
        ws.result("create_mailbox", {"name": "Made on the web"})
    ctx = client_context(relay.config)
    with imaplib.IMAP4_SSL(relay.host, relay.port("imaps"), ssl_context=ctx) as imap:
        imap.login(*account)
        _, listed = imap.list()
    assert any(b"Made on the web" in line for line in listed)


def test_error_strings(relay: LiveWebRelay, account) -> None:
    relay.store_message(account[0], encrypted("x@example.org", account[0]))
    with relay.ws(account, since_uid=1) as ws:
        ws.send_raw("{this is not json")
        assert ws.receive() == {"action": "error", "data": "invalid JSON"}
        assert ws.error("no_such_thing") == "unknown action: no_such_thing"
        assert ws.error("fetch", {"uid": 42}) == "message not found"
        assert ws.error("delete", {"uid": 42}) == "message not found"
        assert ws.error("flags", {"uid": 1, "flags": [], "op": "xor"}) == (
            "invalid op: must be add, remove, or set"
        )
        assert ws.error("move", {"uid": 1}) == "dest_mailbox is required"
        assert ws.error("copy", {"uid": 1, "dest_mailbox": ""}) == "dest_mailbox is required"
        assert ws.error("search", {}) == "query is required"
        assert ws.error("send", {"to": [], "body": "x"}) == "missing recipients"
        other = f"someone@{relay.domain}"
        assert ws.error("send", {"from": other, "to": ["a@example.org"], "body": "x"}) == (
            "sender must match authenticated user"
        )
        plain = cleartext(account[0], account[0]).decode()
        assert ws.error("send", {"to": [account[0]], "body": plain}) == (
            "Encryption Needed: Invalid Unencrypted Mail"
        )
        assert ws.error("create_mailbox", {}) == "name is required"
        assert ws.error("delete_mailbox", {"name": "INBOX"}).startswith("failed to delete mailbox")
        # the socket is still fine after all that
        assert ws.result("list_mailboxes")[0]["name"] == "INBOX"


@pytest.mark.webimap(send=False)
def test_send_action_while_send_is_off(relay: LiveWebRelay, account) -> None:
    with relay.ws(account) as ws:
        assert ws.error("send", {"to": [account[0]], "body": "x"}) == "send is not enabled"


def test_json_ping_is_answered(relay: LiveWebRelay, account) -> None:
    with relay.ws(account) as ws:
        ws.send_raw('{"type":"ping"}')
        assert ws.receive() == {"action": "pong"}


# -- keep-alive and limits ------------------------------------------------------------------


@pytest.mark.webimap(ping_interval=1, idle_timeout=3)
def test_pings_and_the_idle_timeout(relay: LiveWebRelay, account) -> None:
    # A client that answers pings (websockets does) stays connected past the timeout ...
    with relay.ws(account) as ws:
        time.sleep(4.5)
        assert ws.result("list_mailboxes")[0]["name"] == "INBOX"
    # ... one that never answers is pinged, then closed with 1001.
    raw = RawWS(relay, account)
    try:
        opcodes = []
        while True:
            opcode, payload = raw.frame()
            opcodes.append(opcode)
            if opcode == CLOSE:
                break
        assert PING in opcodes
        assert struct.unpack("!H", payload[:2])[0] == 1001
        assert payload[2:] == b"idle timeout"
    finally:
        raw.close()
    wait_until(lambda: relay.app.admission.per_account.count(account[0]) == 0)


@pytest.mark.webimap(send_queue=4, send_timeout=1)
def test_a_client_that_does_not_read_is_disconnected(relay: LiveWebRelay, account) -> None:
    # Enough backlog (pushed at connect: since_uid=0) to fill the kernel's buffers and the
    # socket's queue of 4 frames: 400 summaries of messages with 200 recipients each.
    many = ", ".join(f"<r{i:03d}@example.org>" for i in range(200))
    data = encrypted("x@example.org", "hidden@example.org").replace(
        b"To: <hidden@example.org>", f"To: {many}".encode()
    )

    async def fill() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(400):
                nursery.start_soon(deliver_to, relay.app.store, [account[0]], data)

    relay.run(fill)
    raw = RawWS(relay, account, rcvbuf=4096)  # ... and never reads
    try:
        counter = relay.app.admission.per_account
        wait_until(lambda: counter.count(account[0]) == 1)
        wait_until(lambda: counter.count(account[0]) == 0, timeout=120)  # the relay let go
        with pytest.raises((EOFError, ConnectionError, ssl.SSLError, AssertionError)):
            for _ in range(1000):  # what had reached the client, then the end
                opcode, _ = raw.frame()
                assert opcode == TEXT
    finally:
        raw.close()


@pytest.mark.limits(max_connections_per_account=2)
def test_websockets_count_toward_the_account_cap_with_imap(relay: LiveWebRelay, account) -> None:
    first, second = relay.ws(account), relay.ws(account)
    with first, second:
        with pytest.raises(InvalidStatus) as refused:
            relay.ws(account)
        assert status_of(refused) == (429, {"error": "too many connections for this account"})
        ctx = client_context(relay.config)
        with (
            imaplib.IMAP4_SSL(relay.host, relay.port("imaps"), ssl_context=ctx) as imap,
            pytest.raises(imaplib.IMAP4.error, match="Too many connections"),
        ):
            imap.login(*account)
    wait_until(lambda: relay.app.admission.per_account.count(account[0]) == 0)
    with relay.ws(account) as ws:
        assert ws.result("list_mailboxes")


@pytest.mark.limits(max_connections_per_ip=3)
def test_websockets_count_toward_the_per_ip_cap(relay: LiveWebRelay, account) -> None:
    per_ip = relay.app.admission.per_ip
    wait_until(lambda: per_ip.count("127.0.0.1") == 0)
    sockets = [relay.ws(account) for _ in range(3)]
    try:
        r = relay.rest("GET", "/webimap/mailboxes", account)
        assert r.status_code == 503
    finally:
        for ws in sockets:
            ws.__exit__()
    wait_until(lambda: per_ip.count("127.0.0.1") == 0)
    assert relay.rest("GET", "/webimap/mailboxes", account).status_code == 200


@pytest.mark.limits(max_message_size=1024)
def test_a_message_over_the_limit_closes_with_1009(relay: LiveWebRelay, account) -> None:
    with relay.ws(account) as ws:
        ws.send_raw(json.dumps({"action": "send", "data": {"body": "x" * 70_000}}))
        with pytest.raises(ConnectionClosedError) as closed:
            ws.receive()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_a_push_says_what_a_listing_says(relay: LiveWebRelay, account) -> None:
    """Pushes are built from the delivery's notification, listings from the store: the same."""
    sender = relay.new_account()
    relay.store_message(account[0], encrypted("x@example.org", account[0], "before"))
    ctx = client_context(relay.config)
    with relay.ws(account, since_uid=1) as ws:
        ws.result("list_mailboxes")
        relay.smtp_send(sender, account[0], encrypted(sender[0], account[0], mid="one"))
        with imaplib.IMAP4_SSL(relay.host, relay.port("imaps"), ssl_context=ctx) as imap:
            imap.login(*account)
            data = encrypted("y@example.org", account[0], "appended")
            imap.append("INBOX", "(\\Flagged $Later)", None, data)
            imap.select("INBOX")
            imap.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
            imap.expunge()  # uid 1 goes: the sequence numbers move up
            relay.smtp_send(sender, account[0], encrypted(sender[0], account[0], mid="two"))
        pushed = [ws.next_push()["data"] for _ in range(3)]
        listed = ws.result("list_messages", {})
    assert [p["uid"] for p in pushed] == [2, 3, 4]
    assert pushed[1]["flags"] == ["$Later", "\\Flagged"]
    assert pushed[2]["seq_num"] == 3  # after the expunge of uid 1
    # uids 2 and 3 came as numbers 2 and 3; since then uid 1 went
    assert pushed[:2] == [{**listed[0], "seq_num": 2}, {**listed[1], "seq_num": 3}]
    assert pushed[2] == listed[2]
