"""POST /api/admin over HTTPS against a relay process: madmail's envelope, the token and its
throttle, every resource, and settings that take effect live (written to relay.toml)."""

from __future__ import annotations

import imaplib
import json
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from relay.config import Config, Shadowsocks, Turn, to_toml
from tests.helpers import (
    RelayProcess,
    client_context,
    free_ports,
    make_config,
    start_relay_process,
    stop_relay_process,
)
from tests.turn.util import free_udp_port, stun_answers
from tests.web.conftest import domain_config

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

USER = "abcdefghi@[127.0.0.1]"
PASSWORD = "password123"
COMMENT = "# the operator's own note, kept by every change\n"


class Admin:
    def __init__(self, relay: RelayProcess) -> None:
        self.relay = relay
        self.url = f"https://127.0.0.1:{relay.port('https')}/api/admin"
        self.token = (relay.config.data_dir / "admin_token").read_text().strip()

    def raw(self, envelope: Any, **kwargs: Any) -> requests.Response:
        return requests.post(self.url, json=envelope, verify=False, timeout=30, **kwargs)

    def call(self, method: str, resource: str, body: Any = None, token: str | None = None) -> dict:
        envelope = {
            "method": method,
            "resource": resource,
            "headers": {"Authorization": f"Bearer {self.token if token is None else token}"},
            "body": body or {},
        }
        answer = self.raw(envelope)
        assert answer.status_code == 200  # madmail's rule: the envelope carries the status
        return answer.json()

    def ok(self, method: str, resource: str, body: Any = None) -> Any:
        answer = self.call(method, resource, body)
        assert answer["status"] == 200, answer
        assert answer["error"] is None and answer["resource"] == resource
        return answer["body"]


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    config = make_config(tmp_path / "data", turn=_turn_off(free_udp_port()))
    process = start_relay_process(config, tmp_path / "relay.toml")
    text = process.config_path.read_text()
    process.config_path.write_text(COMMENT + text)
    yield process
    stop_relay_process(process)


def _turn_off(port: int) -> Turn:
    return Turn(port=port, enabled=False)


@pytest.fixture
def admin(relay: RelayProcess) -> Admin:
    return Admin(relay)


def imap_login(config: Config, user: str = USER, password: str = PASSWORD) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL("127.0.0.1", config.listen.imaps, ssl_context=client_context(config))
    imap.login(user, password)
    return imap


def test_the_token_file_is_private(relay: RelayProcess) -> None:
    path = relay.config.data_dir / "admin_token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_text().strip()) == 64


def test_without_or_with_a_wrong_token_nothing_is_answered(admin: Admin) -> None:
    missing = admin.raw({"method": "GET", "resource": "/admin/status"}).json()
    assert missing["status"] == 401 and missing["body"] is None
    assert missing["error"] == "missing bearer token"
    wrong = admin.call("GET", "/admin/status", token="0" * 64)
    assert (wrong["status"], wrong["error"], wrong["body"]) == (401, "invalid token", None)


def test_the_eleventh_failure_in_a_minute_locks_the_address_out(admin: Admin) -> None:
    for _ in range(10):
        assert admin.call("GET", "/admin/status", token="wrong")["status"] == 401
    locked = admin.call("GET", "/admin/status")  # the right token, too late
    assert locked["status"] == 429 and "too many failed" in locked["error"]


def test_a_body_over_one_megabyte_is_refused_before_authentication(
    admin: Admin, relay: RelayProcess
) -> None:
    """Announced larger than 1 MB: refused from the head, before a byte of it is read (a
    client sending it anyway sees the connection close under it, as with any HTTP server)."""
    head = (
        "POST /api/admin HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
        f"Content-Length: {(1 << 20) + 1}\r\n\r\n"
    )
    config = relay.config
    raw = socket.create_connection(("127.0.0.1", config.listen.https), timeout=30)
    with client_context(config).wrap_socket(raw) as tls:
        tls.sendall(head.encode())
        answer = tls.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_not_json_unknown_resources_and_methods(admin: Admin) -> None:
    bad = requests.post(admin.url, data=b"{nope", verify=False, timeout=30).json()
    assert (bad["status"], bad["error"]) == (400, "invalid JSON")
    assert admin.call("GET", "/admin/nothing")["status"] == 404
    assert admin.call("PUT", "/admin/status")["status"] == 405
    # What the display may do on the box is not reachable over the network.
    assert admin.call("GET", "/admin/identity")["status"] == 404
    assert admin.call("POST", "/admin/factory-reset")["status"] == 404


def test_status_overview_and_storage(admin: Admin, relay: RelayProcess) -> None:
    imap = imap_login(relay.config)  # creates the account
    status = admin.ok("GET", "/admin/status")
    assert status["users"] == status["accounts"] == 1
    assert status["imap"] == {"connections": 1, "unique_ips": 1}
    assert status["health"]["state"] in ("ok", "degraded")
    for key in ("received_messages", "sent_messages", "outbound_messages", "uptime"):
        assert isinstance(status[key], int)
    imap.logout()
    storage = admin.ok("GET", "/admin/storage")
    assert storage["disk"]["total"] > storage["disk"]["available"] > 0
    assert storage["state_dir"]["size"] > 0
    overview = admin.ok("GET", "/admin/overview")
    assert overview["registration"] == {"status": "open"}
    assert overview["services"]["turn"]["status"] == "disabled"
    assert overview["settings"]["limits.max_message_size"] == relay.config.limits.max_message_size


def test_a_setting_changed_live_applies_to_the_next_smtp_transaction(
    admin: Admin, relay: RelayProcess
) -> None:
    answer = admin.ok(
        "POST", "/admin/settings/max_message_size", {"action": "set", "value": "2048"}
    )
    assert answer["key"] == "limits.max_message_size"
    assert (answer["value"], answer["is_set"], answer["applied"]) == (2048, True, True)
    assert answer["restart_required"] == []
    text = relay.config_path.read_text()
    assert text.startswith(COMMENT) and "max_message_size = 2048" in text
    config = relay.config
    with smtplib.SMTP_SSL(
        "127.0.0.1", config.listen.submissions, context=client_context(config)
    ) as smtp:
        smtp.login(USER, PASSWORD)
        with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as refused:
            smtp.sendmail(USER, [USER], b"Subject: big\r\n\r\n" + b"x" * 4000)
    assert refused.value.smtp_code == 552
    reset = admin.ok("POST", "/admin/settings/limits.max_message_size", {"action": "reset"})
    assert (
        reset["value"] == Config.__dataclass_fields__["limits"].default_factory().max_message_size
    )
    assert reset["is_set"] is False


def test_a_bad_value_is_refused_and_the_file_left_alone(admin: Admin, relay: RelayProcess) -> None:
    before = relay.config_path.read_bytes()
    answer = admin.call(
        "POST", "/admin/settings/limits.max_message_size", {"action": "set", "value": "tiny"}
    )
    assert answer["status"] == 400 and "limits.max_message_size" in answer["error"]
    assert admin.call("GET", "/admin/settings/no.such_key")["status"] == 404
    assert relay.config_path.read_bytes() == before


def test_a_listener_port_change_says_restart_required(admin: Admin, relay: RelayProcess) -> None:
    port = relay.config.listen.imap + 1
    answer = admin.ok("POST", "/admin/settings/listen.imap", {"action": "set", "value": port})
    assert answer["restart_required"] == ["listen.imap"]


def test_closing_registration_makes_new_answer_403(admin: Admin, relay: RelayProcess) -> None:
    new_url = f"http://127.0.0.1:{relay.port('http')}/new"
    assert requests.post(new_url, timeout=10).status_code == 200
    assert admin.ok("POST", "/admin/registration", {"action": "close"})["status"] == "closed"
    assert requests.post(new_url, timeout=10).status_code == 403
    assert admin.ok("GET", "/admin/registration") == {"status": "closed"}
    assert admin.ok("POST", "/admin/registration/jit", {"action": "disable"})["status"] == (
        "disabled"
    )
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(relay.config)  # no account is made at a first login either
    bad = admin.call("POST", "/admin/registration", {"action": "maybe"})
    assert (bad["status"], bad["error"]) == (400, "action must be one of open, close")


def test_blocking_an_account_ends_its_logins_and_unblocking_frees_the_name(
    admin: Admin, relay: RelayProcess
) -> None:
    imap_login(relay.config).logout()
    listed = admin.ok("GET", "/admin/accounts")
    assert [a["username"] for a in listed["accounts"]] == [USER]
    assert admin.ok("POST", "/admin/blocklist", {"username": USER, "reason": "spam"})["blocked"]
    assert admin.ok("GET", "/admin/blocklist")["blocked"] == [{"username": USER}]
    assert admin.ok("GET", "/admin/accounts")["accounts"] == []
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(relay.config)
    admin.ok("DELETE", "/admin/blocklist", {"username": USER})
    imap_login(relay.config).logout()  # a new account under the old name
    assert admin.ok("DELETE", "/admin/accounts", {"username": USER})["deleted"]
    assert admin.call("DELETE", "/admin/accounts", {"username": USER})["status"] == 404
    outsider = admin.call("POST", "/admin/blocklist", {"username": "someone@example.org"})
    assert outsider["status"] == 400


def test_quota_and_mail_purges(admin: Admin, relay: RelayProcess) -> None:
    imap = imap_login(relay.config)
    for n in range(3):
        imap.append("INBOX", "(\\Seen)" if n else "", None, b"Subject: %d\r\n\r\nhi\r\n" % n)
    quota = admin.ok("GET", "/admin/quota", {"username": USER})
    assert quota["used_bytes"] > 0 and quota["max_bytes"] == relay.config.limits.max_mailbox_size
    assert admin.ok("POST", "/admin/queue", {"action": "purge_read"})["messages"] == 2
    assert (
        admin.ok("POST", "/admin/queue", {"action": "purge_user", "username": USER})["messages"]
        == 1
    )
    imap.select("INBOX")
    assert imap.search(None, "ALL")[1] == [b""]
    imap.logout()
    assert admin.ok("POST", "/admin/queue", {"action": "list"}) == {"entries": []}


def test_federation_policy_and_rules(admin: Admin, relay: RelayProcess) -> None:
    assert admin.ok("GET", "/admin/settings/federation") == {"enabled": True, "policy": "ACCEPT"}
    rules = admin.ok("POST", "/admin/federation/rules", {"domain": "Spam.Example"})
    assert rules["domains"] == ["spam.example"]
    assert admin.call("POST", "/admin/federation/rules", {"domain": "spam.example"})["status"] == (
        409
    )
    assert (
        admin.ok("DELETE", "/admin/federation/rules", {"domain": "spam.example"})["domains"] == []
    )
    changed = admin.ok("POST", "/admin/settings/federation", {"enabled": False})
    assert changed["enabled"] is False
    assert "enabled = false" in relay.config_path.read_text()
    assert admin.ok("GET", "/admin/federation/servers") == {}


def test_dns_and_dkim_in_lan_mode(admin: Admin) -> None:
    assert "LAN mode" in admin.ok("GET", "/admin/dns")["zone"]
    dkim = admin.ok("GET", "/admin/dkim")
    assert (dkim["selector"], dkim["signing"], dkim["txt"]) == ("opendkim", False, None)


def test_dns_and_dkim_in_domain_mode(tmp_path: Path) -> None:
    relay = start_relay_process(domain_config(tmp_path), tmp_path / "relay.toml")
    try:
        admin = Admin(relay)
        dns = admin.ok("GET", "/admin/dns")
        assert any(" IN MX 10 relay.test." in line for line in dns["records"])
        dkim = admin.ok("GET", "/admin/dkim")
        assert dkim["name"] == "opendkim._domainkey.relay.test"
        assert dkim["txt"].startswith("v=DKIM1;k=rsa;p=")
        assert any(dkim["txt"][-40:] in line.replace('" "', "") for line in dns["records"])
        # The iroh relay is served on the HTTPS listener there, without a listener of its own.
        assert admin.ok("GET", "/admin/services/iroh") == {"status": "enabled", "running": True}
    finally:
        stop_relay_process(relay)


def test_turning_turn_on_and_off_keeps_other_sessions(admin: Admin, relay: RelayProcess) -> None:
    port = relay.config.turn.port
    imap = imap_login(relay.config)
    assert not stun_answers(port)
    on = admin.ok("POST", "/admin/services/turn", {"action": "enable"})
    assert (on["status"], on["running"], on["applied"]) == ("enabled", True, True)
    assert stun_answers(port)
    assert imap.noop()[0] == "OK"
    off = admin.ok("POST", "/admin/services/turn", {"action": "disable"})
    assert (off["status"], off["running"]) == ("disabled", False)
    assert not stun_answers(port)
    assert imap.noop()[0] == "OK"  # the IMAP session lived through both
    imap.logout()
    assert admin.call("GET", "/admin/services/telnet")["status"] == 404


def test_the_admin_socket_shares_the_table(relay: RelayProcess) -> None:
    sock_path = relay.config.data_dir / "admin.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(sock_path))
        f = sock.makefile("rwb")
        for request in (
            b'{"id": 1, "method": "admin", "params": {"method": "GET",'
            b' "resource": "/admin/registration"}}\n',
            b'{"id": 2, "method": "reload"}\n',
        ):
            f.write(request)
            f.flush()
            answer = json.loads(f.readline())
            assert "error" not in answer, answer
            if answer["id"] == 1:
                assert answer["result"] == {"status": "open"}
            else:
                assert answer["result"]["applied"] is True


def relay_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=60
    )


def test_relay_status_prints_the_running_relays_figures(relay: RelayProcess) -> None:
    imap = imap_login(relay.config)
    done = relay_cli("status", "--config", str(relay.config_path))
    imap.logout()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("relay 127.0.0.1: ")
    assert "accounts     1\n" in done.stdout and "imaps 1" in done.stdout


def test_relay_status_says_when_no_relay_runs(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    path = tmp_path / "relay.toml"
    path.write_text(to_toml(config))
    done = relay_cli("status", "--config", str(path))
    assert done.returncode == 1 and "no relay runs" in done.stderr


def test_admin_token_prints_the_token_and_a_login_link(relay: RelayProcess, admin: Admin) -> None:
    done = relay_cli("admin-token", "--config", str(relay.config_path))
    assert done.returncode == 0, done.stderr
    assert admin.token in done.stdout
    url = f"https://127.0.0.1:{relay.port('https')}/admin#token={admin.token}"
    assert url in done.stdout


def test_the_new_account_rate_limit_applies_live(admin: Admin, relay: RelayProcess) -> None:
    new_url = f"http://127.0.0.1:{relay.port('http')}/new"
    for key, value in (("limits.new_account_burst", 1), ("limits.new_account_per_minute", 1)):
        assert admin.ok("POST", f"/admin/settings/{key}", {"action": "set", "value": value})[
            "applied"
        ]
    answers = [requests.post(new_url, timeout=10).status_code for _ in range(3)]
    assert answers[0] == 200 and 429 in answers[1:]


def test_a_tls_mode_change_is_written_but_waits_for_a_restart(
    admin: Admin, relay: RelayProcess
) -> None:
    config = relay.config
    changed = admin.ok(
        "POST", "/admin/settings/tls.cert", {"action": "set", "value": str(config.cert_path)}
    )
    assert changed["restart_required"] == []
    admin.ok("POST", "/admin/settings/tls.key", {"action": "set", "value": str(config.key_path)})
    answer = admin.ok("POST", "/admin/settings/tls.mode", {"action": "set", "value": "files"})
    assert answer["restart_required"] == ["tls.mode"]
    assert answer["value"] == "self-signed"  # the value in effect until the restart
    assert 'mode = "files"' in relay.config_path.read_text()
    # The running relay keeps serving with the certificate it started with.
    imap_login(config).logout()


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


def test_switching_shadowsocks_opens_and_closes_its_port(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    config = make_config(tmp_path / "data", shadowsocks=Shadowsocks(port=port, enabled=False))
    relay = start_relay_process(config, tmp_path / "relay.toml")
    try:
        admin = Admin(relay)
        assert not _listens(port)
        on = admin.ok("POST", "/admin/services/shadowsocks", {"action": "enable"})
        assert (on["status"], on["running"]) == ("enabled", True)
        assert _listens(port)
        assert admin.ok("GET", "/admin/status")["shadowsocks"]["port"] == port
        off = admin.ok("POST", "/admin/services/shadowsocks", {"action": "disable"})
        assert (off["status"], off["running"]) == ("disabled", False)
        assert not _listens(port)
    finally:
        stop_relay_process(relay)


def test_switching_webimap_opens_and_closes_its_routes(admin: Admin, relay: RelayProcess) -> None:
    url = f"https://127.0.0.1:{relay.port('https')}/webimap/mailboxes"
    login = {"X-Email": USER, "X-Password": PASSWORD}
    imap = imap_login(relay.config)
    assert requests.get(url, headers=login, verify=False, timeout=10).status_code == 404
    on = admin.ok("POST", "/admin/services/webimap", {"action": "enable"})
    assert (on["status"], on["running"]) == ("enabled", True)
    answer = requests.get(url, headers=login, verify=False, timeout=10)
    assert answer.status_code == 200 and "INBOX" in [m["name"] for m in answer.json()]
    assert admin.ok("GET", "/admin/services/websmtp") == {"status": "disabled", "running": False}
    admin.ok("POST", "/admin/services/webimap", {"action": "disable"})
    assert requests.get(url, headers=login, verify=False, timeout=10).status_code == 404
    assert imap.noop()[0] == "OK"
    imap.logout()
