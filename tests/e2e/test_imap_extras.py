"""IMAP extras Delta Chat uses: push tokens (METADATA), server metadata keys, quota."""

from __future__ import annotations

import base64
import dataclasses
import imaplib
import json
import os
import re
import time
from collections.abc import Callable

import pytest

from relay.config import Config, Limits, Metadata, Privacy
from tests.e2e.dclient import LiveRelay, Profile

imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))

# The server entries the Delta Chat core (2.65, observed on the wire) asks for right after login.
CLIENT_KEYS = (
    "/shared/comment",
    "/shared/admin",
    "/shared/vendor/deltachat/irohrelay",
    "/shared/vendor/deltachat/turn",
    "/shared/vendor/deltachat/maxsmtprecipients",
    "/shared/vendor/deltachat/appversions",
)
TOKEN_RE = re.compile(rb'(/[^\s()"]+)|(NIL)|"((?:[^"\\]|\\.)*)"|\{(\d+)\+?\}')


def _imap(relay: LiveRelay, profile: Profile) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL(
        relay.host, relay.port("imaps"), ssl_context=relay.ssl_client_context()
    )
    imap.login(profile.addr, profile.password)
    return imap


def _parse_entries(imap: imaplib.IMAP4_SSL) -> dict[str, bytes | None]:
    """The entries of the METADATA responses just received: key -> value (None for NIL)."""
    _, data = imap._untagged_response("OK", [None], "METADATA")
    tokens: list[bytes | None] = []
    continued = False  # imaplib splits a response at each literal
    for item in data:
        text, literal = item if isinstance(item, tuple) else (item, None)
        if not continued:  # a new response: skip its mailbox name
            text = text.split(b" ", 1)[1]
        continued = literal is not None
        for key, nil, quoted, size in TOKEN_RE.findall(text):
            if key:
                tokens.append(key)
            elif nil:
                tokens.append(None)
            elif size:
                tokens.append(literal)
            else:
                tokens.append(re.sub(rb"\\(.)", rb"\1", quoted))
    keys, values = tokens[0::2], tokens[1::2]
    return {key.decode(): value for key, value in zip(keys, values, strict=True)}


def test_push_token_is_stored(relay: LiveRelay, make_profile: Callable[[str], Profile]) -> None:
    # The rpc server has no call to give the core a device token (only the mobile apps' FFI
    # does), so this sends the very command the core sends, as the profile's user.
    alice = make_profile("alice")
    token = "openpgp:" + base64.b64encode(os.urandom(600)).decode()
    with _imap(relay, alice) as imap:
        typ, _ = imap._simple_command("SETMETADATA", "INBOX", f'(/private/devicetoken "{token}")')
        assert typ == "OK"

    relay.restart()  # stored means durable

    with _imap(relay, alice) as imap:
        typ, _ = imap._simple_command("GETMETADATA", "INBOX", "/private/devicetoken")
        assert typ == "OK"
        assert _parse_entries(imap) == {"/private/devicetoken": token.encode()}


TURN = "127.0.0.1:3478:1900000000:turn-secret"  # host:port:expiry (the user name):password
APP_SOURCE = {
    "sourceId": "github",
    "versionInteger": 99_000_000,
    "versionString": "99.0.0",
    "downloadUrl": "https://github.com/deltachat/deltachat-android/releases",
}
APPVERSIONS = json.dumps({"clients": [{"clientId": "deltachat-android", "sources": [APP_SOURCE]}]})


@pytest.mark.relay_config(
    privacy=Privacy(privacy_mail="privacy@example.org"),
    metadata=Metadata(turn=TURN, appversions=APPVERSIONS),
)
def test_client_reads_server_metadata(
    relay: LiveRelay, relay_config: Config, make_profile: Callable[[str], Profile]
) -> None:
    alice = make_profile("alice")

    # The client offers the relay's TURN server for calls and knows the announced app version.
    ice = json.loads(alice.call(alice.client.rpc.ice_servers, alice.account.id))
    assert {"urls": ["turn:127.0.0.1:3478"], "username": "1900000000"}.items() <= ice[0].items()
    assert ice[0]["credential"] == "turn-secret"
    version = alice.call(alice.client.rpc.get_app_version, "deltachat-android", "github")
    assert version["versionString"] == "99.0.0"
    # The other entries, as the relay answers the client's own command.
    with _imap(relay, alice) as imap:
        typ, _ = imap._simple_command("GETMETADATA", '""', f"({' '.join(CLIENT_KEYS)})")
        assert typ == "OK"
        entries = _parse_entries(imap)
    assert set(entries) == set(CLIENT_KEYS)
    assert entries["/shared/admin"] == b"mailto:privacy@example.org"
    assert (
        entries["/shared/vendor/deltachat/maxsmtprecipients"]
        == str(relay_config.limits.max_recipients).encode()
    )


@pytest.mark.relay_config(limits=dataclasses.replace(Limits(), max_mailbox_size=64 << 20))
def test_quota_is_reported(make_profile: Callable[[str], Profile]) -> None:
    alice = make_profile("alice")

    # The connectivity view shows the relay's GETQUOTAROOT answer: usage of the 64 MiB limit.
    deadline = time.monotonic() + 30
    while not re.search(r"quota-list.*\bof 64 MiB used", html := alice.connectivity_html()):
        assert time.monotonic() < deadline, f"no quota in the connectivity view:\n{html}"
        time.sleep(0.5)
