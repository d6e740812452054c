"""Push with the real Delta Chat core: a message from one real client to another whose
account has a device token makes the relay POST exactly that token to the proxy."""

from __future__ import annotations

import base64
import dataclasses
import imaplib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.config import Config, Push
from tests.e2e.dclient import LiveRelay, Profile
from tests.helpers import make_config
from tests.push.endpoint import Endpoint, ThreadedEndpoint

imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[ThreadedEndpoint, Endpoint]]:
    threaded = ThreadedEndpoint(tmp_path / "proxy")
    with threaded as endpoint:
        yield threaded, endpoint


@pytest.fixture
def relay_config(tmp_path: Path, proxy: tuple[ThreadedEndpoint, Endpoint]) -> Config:
    _, endpoint = proxy
    config = make_config(tmp_path / "relay-data")
    return dataclasses.replace(config, push=Push(url=endpoint.url, ca_file=str(endpoint.ca.path)))


def test_a_message_from_a_real_client_wakes_the_recipients_device(
    relay: LiveRelay,
    proxy: tuple[ThreadedEndpoint, Endpoint],
    pair: tuple[Profile, Profile],
) -> None:
    threaded, endpoint = proxy
    alice, bob = pair
    posts_before = len(endpoint.posts)  # none: no account had a token yet
    token = "openpgp:" + base64.b64encode(os.urandom(600)).decode()
    # The core's own command (the rpc server cannot hand the core a token; the apps' FFI does).
    with imaplib.IMAP4_SSL(
        relay.host, relay.port("imaps"), ssl_context=relay.ssl_client_context()
    ) as imap:
        imap.login(bob.addr, bob.password)
        typ, _ = imap._simple_command("SETMETADATA", "INBOX", f'(/private/devicetoken "{token}")')
        assert typ == "OK"

    alice.call(alice.chat_with(bob).send_text, "wake up")
    bob.wait_incoming(lambda m: m.text == "wake up")
    posts = threaded.wait_for(posts_before + 1)
    assert [p.body for p in posts[posts_before:]] == [token.encode()]
    assert posts_before == 0
