"""The origin check for mail from other relays: who may claim which From domain.

A DNS-name From domain needs a DKIM signature that verifies and whose `d=` is exactly that
domain (strict alignment, as the official relay's filtermail). Domain-literal senders have no
DNS to publish keys in; the official relay accepts them without a check and so do we (their
messages are still end-to-end encrypted and signed, which the clients verify), except our own
literal in LAN mode: our users' mail never comes from outside. The federation policy applies to
the From domain and to the envelope sender's domain.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import dkim as dkimpy
import trio
from dkim.util import InvalidTagValueList, parse_tag_value

from relay.addresses import from_domain
from relay.policy.peers import REJECT_REPLY, address_domain, normalize, peer_allowed
from relay.reply import Reply
from relay.resolver import txt_record

NO_SIGNATURE = Reply(554, "5.7.1", "No DKIM signature found")
NO_VALID_SIGNATURE = Reply(554, "5.7.1", "No valid DKIM signature found")
BAD_HEADERS = Reply(500, "5.6.0", "Failed to parse message headers")
OWN_DOMAIN = Reply(554, "5.7.1", "From address in our own domain, from outside")
MAX_SIGNATURES = 8  # verified per message; more is an attempt to make us do DNS work
KEY_CACHE_SIZE = 1000
KEY_CACHE_SECONDS = 3600.0


class KeyCache:
    """Public keys by DNS name; a key that failed to verify is fetched again at once, so a
    sender's key rotation costs one lookup, not a refused message."""

    def __init__(self) -> None:
        self._keys: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()

    async def get(self, name: bytes, config: Any) -> bytes | None:
        hit = self._keys.get(name)
        if hit is not None and hit[0] > time.monotonic():
            self._keys.move_to_end(name)
            return hit[1]
        value = await txt_record(name.decode("ascii", "replace"), config.federation)
        if value is None:
            return None  # not cached: a DNS hiccup must not refuse a domain for an hour
        self._keys[name] = (time.monotonic() + KEY_CACHE_SECONDS, value)
        while len(self._keys) > KEY_CACHE_SIZE:
            self._keys.popitem(last=False)
        return value

    def drop(self, name: bytes) -> None:
        self._keys.pop(name, None)


keys = KeyCache()


async def origin_check(app: Any, message: bytes, mail_from: str) -> Reply | None:
    """None if the message may come from where it says, else the refusal."""
    config = app.config
    try:
        domain = from_domain(message)
    except (ValueError, IndexError):
        return BAD_HEADERS
    if domain is None:
        return BAD_HEADERS
    for peer in (domain, address_domain(mail_from) if mail_from else ""):
        if peer and not peer_allowed(config, peer):
            app.log.info("federation-policy-refused", domain=peer)
            return REJECT_REPLY
    if domain.startswith("["):
        # No DNS, no DKIM key: nothing proves where such a message comes from. Our own users'
        # mail never reaches us from outside, so a literal that is ours can only be forged.
        if normalize(domain) == normalize(config.address_domain):
            app.log.info("own-domain-from-outside", domain=domain)
            return OWN_DOMAIN
        return None
    return await dkim_check(app, message, domain)


async def dkim_check(app: Any, message: bytes, domain: str) -> Reply | None:
    try:
        signatures = _signatures(message)
    except (InvalidTagValueList, dkimpy.DKIMException, ValueError):
        return BAD_HEADERS
    if not signatures:
        return NO_SIGNATURE
    for idx, tags in signatures[:MAX_SIGNATURES]:
        d = tags.get(b"d", b"").decode("ascii", "replace").lower().rstrip(".")
        selector = tags.get(b"s", b"")
        if d != normalize(domain) or not selector:
            continue  # a signature by someone else says nothing about this From domain
        name = selector + b"._domainkey." + d.encode() + b"."
        key = await keys.get(name, app.config)
        if key is not None and await trio.to_thread.run_sync(_verify, message, idx, name, key):
            return None
        keys.drop(name)
        # The cached key may be one the sender has since rotated away: ask DNS once more.
        fresh = await keys.get(name, app.config)
        if fresh not in (None, key) and await trio.to_thread.run_sync(
            _verify, message, idx, name, fresh
        ):
            return None
    app.log.info("dkim-refused", domain=domain)
    return NO_VALID_SIGNATURE


def _signatures(message: bytes) -> list[tuple[int, dict[bytes, bytes]]]:
    headers = dkimpy.DKIM(message).headers
    values = [value for name, value in headers if name.lower() == b"dkim-signature"]
    return [(idx, parse_tag_value(value)) for idx, value in enumerate(values)]


def _verify(message: bytes, idx: int, name: bytes, key: bytes) -> bool:
    def lookup(qname: bytes, timeout: float = 0) -> bytes | None:
        return key if qname.lower() == name.lower() else None

    try:
        return bool(dkimpy.DKIM(message).verify(idx=idx, dnsfunc=lookup))
    except dkimpy.DKIMException:
        return False
