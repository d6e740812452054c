"""IMAP extras Delta Chat uses: push tokens (METADATA), server metadata keys, quota."""

from __future__ import annotations

import base64
import imaplib
import os
import re
from collections.abc import Callable

from tests.e2e.dclient import LiveRelay, Profile

imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))


def _imap(relay: LiveRelay, profile: Profile) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL(relay.host, relay.port("imaps"), ssl_context=relay.ssl_context())
    imap.login(profile.addr, profile.password)
    return imap


def _metadata_value(imap: imaplib.IMAP4_SSL, mailbox: str, key: str) -> bytes | None:
    typ, _ = imap._simple_command("GETMETADATA", mailbox, key)
    assert typ == "OK"
    _, data = imap._untagged_response(typ, [None], "METADATA")
    for item in data:
        if isinstance(item, tuple):  # the value came as a literal
            return item[1]
        if item and (m := re.search(rb'\s"([^"]*)"\)$', item)):
            return m.group(1)
    return None


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
        assert _metadata_value(imap, "INBOX", "/private/devicetoken") == token.encode()
