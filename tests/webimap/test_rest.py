"""WebIMAP's REST API with a real HTTP client (requests), against a relay on loopback."""

from __future__ import annotations

import dataclasses
import imaplib
import json
import smtplib
import socket
import threading
import time

import pytest
import requests
import trio
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from relay.config import Accounts
from relay.ratelimit import AuthThrottle
from tests.helpers import client_context
from tests.webimap.conftest import LiveWebRelay, cleartext, encrypted


def wait_until(condition, timeout: float = 30.0) -> None:  # noqa: ANN001
    """A bounded wait for something the relay does in the background (never a time limit on
    the relay: the condition is what is tested)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def imap_flags(relay: LiveWebRelay, account: tuple[str, str], uid: int) -> str:
    with imaplib.IMAP4_SSL(
        relay.host, relay.port("imaps"), ssl_context=client_context(relay.config), timeout=30
    ) as imap:
        imap.login(*account)
        imap.select("INBOX")
        _, data = imap.uid("FETCH", str(uid), "(FLAGS)")
        return data[0].decode()


# -- auth -----------------------------------------------------------------------------------


def test_missing_and_wrong_credentials_are_401(relay: LiveWebRelay, account) -> None:
    r = relay.rest("GET", "/webimap/mailboxes")
    assert (r.status_code, r.json()) == (401, {"error": "missing credentials"})
    r = relay.rest("GET", "/webimap/mailboxes", (account[0], ""))
    assert (r.status_code, r.json()) == (401, {"error": "missing credentials"})
    r = relay.rest("GET", "/webimap/mailboxes", (account[0], "wrong-password-1"))
    assert (r.status_code, r.json()) == (401, {"error": "authentication failed"})
    r = relay.rest("GET", "/webimap/mailboxes", ("someone@example.org", "whatever-1"))
    assert (r.status_code, r.json()) == (401, {"error": "authentication failed"})


def test_first_login_creates_the_account_as_imap_does(relay: LiveWebRelay) -> None:
    addr, password = relay.new_account()
    assert not relay.run(relay.app.store.account_exists, addr)
    assert relay.rest("GET", "/webimap/mailboxes", (addr, password)).status_code == 200
    assert relay.run(relay.app.store.account_exists, addr)
    with imaplib.IMAP4_SSL(
        relay.host, relay.port("imaps"), ssl_context=client_context(relay.config), timeout=30
    ) as imap:  # the same account over IMAP, with the same password
        assert imap.login(addr, password)[0] == "OK"


def test_no_account_is_created_while_registration_is_closed(relay: LiveWebRelay) -> None:
    def close() -> None:
        relay.app.config = dataclasses.replace(
            relay.app.config, accounts=Accounts(registration_open=False)
        )

    trio.from_thread.run_sync(close, trio_token=relay.token)
    addr, password = relay.new_account()
    r = relay.rest("GET", "/webimap/mailboxes", (addr, password))
    assert (r.status_code, r.json()) == (401, {"error": "authentication failed"})
    assert not relay.run(relay.app.store.account_exists, addr)


def test_failed_logins_are_throttled_together_with_imap(relay: LiveWebRelay, account) -> None:
    # A throttle that locks a client out after three failures (the relay's is slower to reach).
    relay.app.auth_throttle = AuthThrottle(free_failures=0, base_delay=0.01, lockout_after=3)
    ctx = client_context(relay.config)
    for _ in range(3):  # three failures over IMAP ...
        with (
            imaplib.IMAP4_SSL(relay.host, relay.port("imaps"), ssl_context=ctx) as imap,
            pytest.raises(imaplib.IMAP4.error),
        ):
            imap.login(account[0], "wrong-password-1")
    # ... and WebIMAP refuses this client even with the right password
    r = relay.rest("GET", "/webimap/mailboxes", account)
    assert r.status_code == 429
    assert r.json() == {"error": "too many failed logins, try again later"}


def test_failures_over_webimap_lock_imap_out_too(relay: LiveWebRelay, account) -> None:
    relay.app.auth_throttle = AuthThrottle(free_failures=0, base_delay=0.01, lockout_after=3)
    for _ in range(3):
        assert (
            relay.rest("GET", "/webimap/mailboxes", (account[0], "nope-nope-1")).status_code == 401
        )
    ctx = client_context(relay.config)
    with (
        imaplib.IMAP4_SSL(relay.host, relay.port("imaps"), ssl_context=ctx) as imap,
        pytest.raises(imaplib.IMAP4.error),
    ):
        imap.login(*account)


# -- reading --------------------------------------------------------------------------------


def test_mailboxes_lists_inbox_and_the_others_with_counts(relay: LiveWebRelay, account) -> None:
    relay.store_message(account[0], encrypted("x@example.org", account[0]))
    relay.store_message(account[0], encrypted("x@example.org", account[0]))
    relay.run(relay.app.store.create_mailbox, account[0], "DeltaChat")
    r = relay.rest("GET", "/webimap/mailboxes", account)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    boxes = {m["name"]: m for m in r.json()}
    assert boxes["INBOX"] == {
        "name": "INBOX",
        "attributes": ["\\HasNoChildren"],
        "messages": 2,
        "unseen": 2,
    }
    assert boxes["DeltaChat"]["messages"] == 0


def test_messages_are_summaries_since_a_uid(relay: LiveWebRelay, account) -> None:
    for n in range(3):
        relay.store_message(account[0], encrypted("x@example.org", account[0], f"no {n}"))
    everything = relay.rest("GET", "/webimap/messages", account).json()
    assert [m["uid"] for m in everything] == [1, 2, 3]
    assert [m["seq_num"] for m in everything] == [1, 2, 3]
    first = everything[0]
    assert set(first) == {"uid", "seq_num", "flags", "size", "date", "envelope"}
    assert first["flags"] == [] and first["size"] > 500
    assert first["date"].endswith("Z") and first["date"][4] == "-"
    assert first["envelope"] == {
        "date": "2024-01-01T00:00:00Z",
        "subject": "no 0",
        "from": [{"mailbox": "x", "host": "example.org"}],
        "to": [{"mailbox": account[0].split("@")[0], "host": relay.domain}],
        "message_id": "<0b1c2d3e@localhost>",
    }
    later = relay.rest("GET", "/webimap/messages?mailbox=INBOX&since_uid=2", account).json()
    assert [m["uid"] for m in later] == [3]
    r = relay.rest("GET", "/webimap/messages?mailbox=Nowhere", account)
    assert r.status_code == 404 and "Nowhere" in r.json()["error"]


def test_envelope_decodes_names_and_subjects(relay: LiveWebRelay, account) -> None:
    message = (
        b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\n"
        b'To: a@example.org, "B" <b@example.org>\r\nCc: c@example.org\r\n'
        b"Subject: =?utf-8?b?R3LDvMOfZQ==?=\r\nIn-Reply-To: <earlier@example.org>\r\n"
        b"\r\nbody\r\n"
    )
    relay.store_message(account[0], message)
    (summary,) = relay.rest("GET", "/webimap/messages", account).json()
    env = summary["envelope"]
    assert env["subject"] == "Grüße"
    assert env["date"] == "0001-01-01T00:00:00Z"  # no Date header: Go's zero time, as madmail
    assert env["from"] == [{"name": "Jürgen", "mailbox": "j", "host": "example.org"}]
    assert env["to"] == [
        {"mailbox": "a", "host": "example.org"},
        {"name": "B", "mailbox": "b", "host": "example.org"},
    ]
    assert env["cc"] == [{"mailbox": "c", "host": "example.org"}]
    assert env["in_reply_to"] == "<earlier@example.org>"
    assert "message_id" not in env


def test_one_message_with_its_body(relay: LiveWebRelay, account) -> None:
    data = encrypted("x@example.org", account[0], "the one")
    relay.store_message(account[0], data)
    r = relay.rest("GET", "/webimap/message/1", account)
    assert r.status_code == 200
    detail = r.json()
    assert detail["uid"] == 1 and detail["envelope"]["subject"] == "the one"
    assert detail["body"].encode() == data
    assert detail["flags"] == []  # reading is a peek: not \Seen
    r = relay.rest("GET", "/webimap/message/7", account)
    assert (r.status_code, r.json()) == (404, {"error": "message not found"})
    r = relay.rest("GET", "/webimap/message/abc", account)
    assert (r.status_code, r.json()) == (400, {"error": "invalid UID"})


def test_long_poll_answers_when_mail_arrives_and_counts_as_a_connection(
    relay: LiveWebRelay, account
) -> None:
    sender = relay.new_account()
    got = {}

    def poll() -> None:
        got["r"] = relay.rest("GET", "/webimap/messages?since_uid=0&wait=120", account, timeout=150)

    waiter = threading.Thread(target=poll)
    waiter.start()
    counter = relay.app.admission.per_account
    wait_until(lambda: counter.count(account[0]) == 1)  # it waits, and holds a connection slot
    relay.smtp_send(sender, account[0], encrypted(sender[0], account[0], mid="woken"))
    waiter.join(timeout=150)
    r = got["r"]
    assert r.status_code == 200
    assert [m["envelope"]["message_id"] for m in r.json()] == ["<woken@localhost>"]
    assert counter.count(account[0]) == 0


def test_long_poll_without_mail_answers_an_empty_list(relay: LiveWebRelay, account) -> None:
    r = relay.rest("GET", "/webimap/messages?wait=1", account)
    assert (r.status_code, r.json()) == (200, [])


@pytest.mark.limits(max_connections_per_account=1)
def test_long_polls_beyond_the_account_cap_are_refused(relay: LiveWebRelay, account) -> None:
    waiter = threading.Thread(target=relay.rest, args=("GET", "/webimap/messages?wait=5", account))
    waiter.start()
    wait_until(lambda: relay.app.admission.per_account.count(account[0]) == 1)
    r = relay.rest("GET", "/webimap/messages?wait=5", account)
    assert (r.status_code, r.json()) == (429, {"error": "too many connections for this account"})
    waiter.join(timeout=30)


# -- changing -------------------------------------------------------------------------------


def test_flags_are_persisted_and_imap_sees_them(relay: LiveWebRelay, account) -> None:
    relay.store_message(account[0], encrypted("x@example.org", account[0]))
    body = {"mailbox": "INBOX", "uid": 1, "flags": ["\\Seen", "\\Flagged"], "op": "add"}
    r = relay.rest("POST", "/webimap/message/flags", account, json=body)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert relay.rest("GET", "/webimap/messages", account).json()[0]["flags"] == [
        "\\Flagged",
        "\\Seen",
    ]
    assert "\\Seen" in imap_flags(relay, account, 1) and "\\Flagged" in imap_flags(
        relay, account, 1
    )
    body = {"uid": 1, "flags": ["\\Flagged"], "op": "remove"}
    assert relay.rest("POST", "/webimap/message/flags", account, json=body).status_code == 200
    body = {"uid": 1, "flags": ["$Label1"], "op": "set"}
    assert relay.rest("POST", "/webimap/message/flags", account, json=body).status_code == 200
    flags = imap_flags(relay, account, 1)
    assert "$Label1" in flags and "\\Seen" not in flags and "\\Flagged" not in flags


def test_flag_errors(relay: LiveWebRelay, account) -> None:
    relay.store_message(account[0], encrypted("x@example.org", account[0]))
    r = relay.rest("POST", "/webimap/message/flags", account, json={"uid": 1, "op": "toggle"})
    assert (r.status_code, r.json()) == (400, {"error": "invalid op: must be add, remove, or set"})
    body = {"uid": 9, "flags": ["\\Seen"], "op": "add"}
    r = relay.rest("POST", "/webimap/message/flags", account, json=body)
    assert (r.status_code, r.json()) == (404, {"error": "message not found"})
    r = relay.rest("POST", "/webimap/message/flags", account, data=b"{not json")
    assert (r.status_code, r.json()) == (400, {"error": "invalid JSON"})
    body = {"uid": 1, "flags": ["bad flag)"], "op": "add"}
    assert relay.rest("POST", "/webimap/message/flags", account, json=body).status_code == 400


def test_delete_expunges_the_message(relay: LiveWebRelay, account) -> None:
    for _ in range(3):
        relay.store_message(account[0], encrypted("x@example.org", account[0]))
    r = relay.rest("DELETE", "/webimap/message/1", account)
    assert (r.status_code, r.json()) == (200, {"status": "deleted"})
    r = relay.rest("DELETE", "/webimap/messages/INBOX/2", account)  # madmail v2's path
    assert (r.status_code, r.json()) == (200, {"status": "deleted"})
    assert [m["uid"] for m in relay.rest("GET", "/webimap/messages", account).json()] == [3]
    r = relay.rest("DELETE", "/webimap/message/1", account)
    assert (r.status_code, r.json()) == (404, {"error": "message not found"})


# -- sending --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/webimap/send", "/websmtp/send"])
def test_send_delivers_encrypted_mail(relay: LiveWebRelay, account, path: str) -> None:
    rcpt = relay.new_account()
    assert relay.rest("GET", "/webimap/mailboxes", rcpt).status_code == 200
    body = encrypted(account[0], rcpt[0], mid="over-the-web").decode()
    r = relay.rest("POST", path, account, json={"from": account[0], "to": [rcpt[0]], "body": body})
    assert (r.status_code, r.json()) == (200, {"status": "sent"})
    (got,) = relay.rest("GET", "/webimap/messages", rcpt).json()
    assert got["envelope"]["message_id"] == "<over-the-web@localhost>"
    # without "from": the login is the sender
    r = relay.rest("POST", path, account, json={"to": [rcpt[0]], "body": body})
    assert r.status_code == 200


def test_send_refuses_cleartext_with_the_smtp_refusal(relay: LiveWebRelay, account) -> None:
    rcpt = relay.new_account()
    assert relay.rest("GET", "/webimap/mailboxes", rcpt).status_code == 200
    data = cleartext(account[0], rcpt[0])
    ctx = client_context(relay.config)
    with smtplib.SMTP_SSL(relay.host, relay.port("submissions"), context=ctx) as smtp:
        smtp.login(*account)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(account[0], [rcpt[0]], data)
    smtp_text = refused.value.smtp_error.decode().removeprefix("5.7.1 ")
    r = relay.rest("POST", "/webimap/send", account, json={"to": [rcpt[0]], "body": data.decode()})
    assert r.status_code == 400
    assert r.json() == {"error": smtp_text}
    assert smtp_text.startswith("Encryption Needed: ")
    assert relay.rest("GET", "/webimap/messages", rcpt).json() == []


def test_send_errors(relay: LiveWebRelay, account) -> None:
    rcpt = relay.new_account()
    body = encrypted(account[0], rcpt[0]).decode()
    r = relay.rest("POST", "/webimap/send", account, json={"to": [], "body": body})
    assert (r.status_code, r.json()) == (400, {"error": "missing recipients"})
    other = f"somebody@{relay.domain}"
    r = relay.rest(
        "POST", "/webimap/send", account, json={"from": other, "to": [rcpt[0]], "body": body}
    )
    assert (r.status_code, r.json()) == (403, {"error": "sender must match authenticated user"})
    r = relay.rest("POST", "/webimap/send", account, data=b"[1, 2")
    assert (r.status_code, r.json()) == (400, {"error": "invalid JSON"})
    r = relay.rest("POST", "/webimap/send", account, json={"to": [rcpt[0]], "body": body})
    assert r.status_code == 400 and "User unknown" in r.json()["error"]  # rcpt never logged in
    r = relay.rest("POST", "/webimap/send", json={"to": [rcpt[0]], "body": body})
    assert (r.status_code, r.json()) == (401, {"error": "missing credentials"})


@pytest.mark.limits(max_message_size=4096, max_mailbox_size=1 << 20)
def test_send_of_a_message_over_the_size_limit_is_413(relay: LiveWebRelay, account) -> None:
    body = encrypted(account[0], "x@example.org").decode() + "x" * 5000
    r = relay.rest("POST", "/webimap/send", account, json={"to": ["x@example.org"], "body": body})
    assert (r.status_code, r.json()) == (413, {"error": "message exceeds maximum size"})
    # A request announcing more than a message of that size can be as JSON is refused before
    # its body is read (the head alone is sent: the relay answers and closes).
    ctx = client_context(relay.config)
    with (
        socket.create_connection((relay.host, relay.port("https")), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname=relay.host) as tls,
    ):
        tls.sendall(
            f"POST /webimap/send HTTP/1.1\r\nHost: {relay.host}\r\nX-Email: {account[0]}\r\n"
            f"X-Password: {account[1]}\r\nContent-Length: 80000\r\n\r\n".encode()
        )
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"error": "message too large"}


@pytest.mark.webimap(send=False)
def test_send_is_404_while_send_is_off(relay: LiveWebRelay, account) -> None:
    for path in ("/webimap/send", "/websmtp/send"):
        r = relay.rest("POST", path, account, json={"to": ["x@example.org"], "body": "x"})
        assert (r.status_code, r.json()) == (404, {"error": "not found"})
    relay.set_webimap(send=True)
    r = relay.rest("POST", "/webimap/send", account, json={"to": [], "body": "x"})
    assert r.json() == {"error": "missing recipients"}


# -- switched off, routing, CORS ------------------------------------------------------------


@pytest.mark.webimap(enabled=False)
def test_every_route_is_404_while_webimap_is_off(relay: LiveWebRelay) -> None:
    account = relay.new_account()
    for method, path in [
        ("GET", "/webimap/mailboxes"),
        ("GET", "/webimap/messages?wait=10"),
        ("GET", "/webimap/message/1"),
        ("DELETE", "/webimap/message/1"),
        ("POST", "/webimap/message/flags"),
        ("POST", "/webimap/send"),
        ("POST", "/websmtp/send"),
        ("GET", "/webimap/ws"),
        ("OPTIONS", "/webimap/mailboxes"),
    ]:
        r = relay.rest(method, path, account)
        assert (r.status_code, r.json()) == (404, {"error": "not found"}), (method, path)
    assert not relay.run(relay.app.store.account_exists, account[0])  # nobody logged in
    relay.set_webimap(enabled=True)  # a reload turns it on, no restart
    assert relay.rest("GET", "/webimap/mailboxes", account).status_code == 200


def test_wrong_methods_and_unknown_paths_answer_json(relay: LiveWebRelay, account) -> None:
    r = relay.rest("POST", "/webimap/mailboxes", account)
    assert (r.status_code, r.json()) == (405, {"error": "method not allowed"})
    r = relay.rest("GET", "/webimap/nothing-here", account)
    assert (r.status_code, r.json()) == (404, {"error": "not found"})
    r = relay.rest("GET", "/webimap/ws", account)
    assert r.status_code == 426


def test_no_cors_headers_by_default(relay: LiveWebRelay, account) -> None:
    r = relay.rest("GET", "/webimap/mailboxes", account, headers={"Origin": "https://a.example"})
    assert not any(k.lower().startswith("access-control-") for k in r.headers)


@pytest.mark.webimap(cors_origins=["https://app.example"])
def test_cors_reflects_a_listed_origin_only(relay: LiveWebRelay, account) -> None:
    r = relay.rest("GET", "/webimap/mailboxes", account, headers={"Origin": "https://app.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Origin" in r.headers["Vary"]
    r = relay.rest("GET", "/webimap/mailboxes", account, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    preflight = relay.rest(
        "OPTIONS",
        "/webimap/message/flags",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert "X-Password" in preflight.headers["Access-Control-Allow-Headers"]
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


@pytest.mark.webimap(cors_origins=["*"])
def test_cors_star_when_configured(relay: LiveWebRelay, account) -> None:
    r = relay.rest("GET", "/webimap/mailboxes", account, headers={"Origin": "https://any.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    r = relay.rest("OPTIONS", "/websmtp/send", headers={"Origin": "https://any.example"})
    assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == "*"


def test_no_password_is_taken_over_plain_http(relay: LiveWebRelay) -> None:
    """LAN mode serves the pages over plain HTTP too; WebIMAP's logins only over TLS."""
    account = relay.new_account()
    url = f"http://{relay.host}:{relay.port('http')}/webimap/mailboxes"
    headers = {"X-Email": account[0], "X-Password": account[1]}
    r = requests.get(url, headers=headers, timeout=30)
    assert r.status_code == 403
    assert r.json() == {"error": "https required: passwords are accepted over TLS only"}
    ws_url = f"ws://{relay.host}:{relay.port('http')}/webimap/ws?email=x&password=y"
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, open_timeout=30)
    assert refused.value.response.status_code == 403
    assert not relay.run(relay.app.store.account_exists, account[0])
