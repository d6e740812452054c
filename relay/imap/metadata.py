"""METADATA (RFC 5464) as the chatmail relay serves it, and QUOTA (RFC 9208).

Server entries (mailbox "") come from the configuration, except /shared/vendor/deltachat/turn:
TURN credentials minted per request (relay.turn.credentials), valid 5 days, for the built-in
TURN server while it runs, or for `[turn] external`; `[metadata] turn` overrides both; and
/shared/vendor/deltachat/irohrelay: the built-in iroh relay's URL (relay.iroh.where), unless
`[metadata] irohrelay` overrides it. The only writable entry is
/private/devicetoken on INBOX (relay.core.tokens): a SET adds a token (or refreshes one already
known), GET returns every live token joined by spaces, in the order first set.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

import trio

from relay.config import Config
from relay.core.tokens import DEVICETOKEN, add_token, clear_tokens, read_tokens, valid_token
from relay.iroh.where import relay_url
from relay.turn.credentials import load_or_create_secret, mint
from relay.turn.service import ipv4_turn_address

from . import respond
from .commands import Command, GetMetadata, HandlerTable
from .errors import No
from .mailboxes import mailbox_name
from .respond import Atom, Literal

if TYPE_CHECKING:
    from .session import Session

QUOTA_ROOT = "User quota"
TURN_KEY = "/shared/vendor/deltachat/turn"
IROH_KEY = "/shared/vendor/deltachat/irohrelay"
RESOLVE_TIMEOUT = 2.0
SERVER_KEYS = (
    "/shared/comment",
    "/shared/admin",
    "/shared/vendor/deltachat/irohrelay",
    "/shared/vendor/deltachat/turn",
    "/shared/vendor/deltachat/maxsmtprecipients",
    "/shared/vendor/deltachat/appversions",
)


def server_value(config: Config, key: str) -> str | None:
    """A server entry's value, or None (sent as NIL) while the relay has nothing to say."""
    key = key.lower()
    if key == "/shared/admin":
        mail = config.privacy.privacy_mail
        return f"mailto:{mail}" if mail else None
    if key == "/shared/vendor/deltachat/maxsmtprecipients":
        # The 2.6x apps take this key as "the relay sends push notifications".
        return str(config.limits.max_recipients) if config.push.url else None
    name = key.rsplit("/", 1)[-1]
    if name in ("comment", "irohrelay", "appversions"):
        return getattr(config.metadata, name) or None
    return None


async def turn_value(s: Session) -> str | None:
    """host:port:username:password for the client's calls, or None when no TURN server runs."""
    config = s.app.config
    if not config.turn.enabled:
        return None
    if config.metadata.turn:
        return config.metadata.turn
    if config.turn.external:
        where = config.turn.external
    else:
        services = s.app.services
        port = services.ports.get("turn") if services is not None else None
        if not port:
            return None
        host = await turn_host(config)
        if host is None:
            return None
        where = f"{host}:{port}"
    secret = load_or_create_secret(config.data_dir, config.turn.secret)
    username, password = mint(secret, time.time())
    return f"{where}:{username}:{password}"


async def turn_host(config: Config) -> str | None:
    """The relay's address for TURN, IPv4 first: the client makes one ICE server per address.
    Never an IPv6 literal: Delta Chat 2.65 makes ICE servers of the IPv6 addresses a name
    resolves to, but none at all of a literal ("::1:3478:..." or "[::1]:3478:..."). A relay
    whose address is IPv6 offers the IPv4 address TURN serves instead, or None if it serves
    none (METADATA NIL then, and the client takes its default TURN server)."""
    host = await _named_turn_host(config)
    return ipv4_turn_address(config) if ":" in host else host


async def _named_turn_host(config: Config) -> str:
    if config.turn.relay_address:
        return config.turn.relay_address
    if config.is_lan:
        return config.mail_domain
    with trio.move_on_after(RESOLVE_TIMEOUT):
        try:
            found = await trio.socket.getaddrinfo(
                config.mail_domain, None, socket.AF_INET, socket.SOCK_DGRAM
            )
        except OSError:
            found = []
        for *_, sockaddr in found:
            return str(sockaddr[0])
    return config.mail_domain


async def cmd_getmetadata(s: Session, cmd: Command) -> str | tuple[str, str]:
    request: GetMetadata = cmd.args[0]
    values: list = []
    longest_skipped = 0
    for entry in request.entries:
        if request.mailbox == "" and entry.lower() == TURN_KEY:
            value = await turn_value(s)
        elif request.mailbox == "" and entry.lower() == IROH_KEY:  # the built-in relay
            ports = s.app.services.ports if s.app.services is not None else {}
            value = relay_url(s.app.config, ports.get("iroh"))
        elif request.mailbox == "":
            value = server_value(s.app.config, entry)
        elif request.mailbox == "INBOX" and entry.lower() == DEVICETOKEN:
            value = " ".join(await read_tokens(s.store, s.addr)) or None
        else:
            value = None
        size = len(value.encode()) if value is not None else 0
        if request.maxsize is not None and size > request.maxsize:
            longest_skipped = max(longest_skipped, size)
            continue
        values += [Atom(entry), None if value is None else Literal(value.encode())]
    if values:
        s.send(respond.untagged(Atom("METADATA"), mailbox_name(request.mailbox), values))
    if longest_skipped:
        return f"METADATA LONGENTRIES {longest_skipped}", "Getmetadata completed."
    return "Getmetadata completed."


async def cmd_setmetadata(s: Session, cmd: Command) -> str:
    mailbox, pairs = cmd.args
    for entry, value in pairs:
        if mailbox != "INBOX" or entry.lower() != DEVICETOKEN:
            raise No("Setmetadata failed: entry is read-only or unknown.")
        if value is None:
            await clear_tokens(s.store, s.addr)
            continue
        token = value.decode("utf-8", "replace").strip()
        if not valid_token(token):
            raise No("Setmetadata failed: invalid device token.")
        await add_token(s.store, s.addr, token)
    return "Setmetadata completed."


async def _send_quota(s: Session) -> None:
    used_kib = (await s.store.quota_usage(s.addr) + 1023) // 1024
    limit_kib = s.app.config.limits.max_mailbox_size // 1024
    s.send(respond.untagged(Atom("QUOTA"), QUOTA_ROOT, (Atom("STORAGE"), used_kib, limit_kib)))


async def cmd_getquotaroot(s: Session, cmd: Command) -> str:
    name = cmd.args[0]
    s.send(respond.untagged(Atom("QUOTAROOT"), mailbox_name(name), QUOTA_ROOT))
    await _send_quota(s)
    return "Getquotaroot completed."


async def cmd_getquota(s: Session, cmd: Command) -> str:
    if cmd.args[0] != QUOTA_ROOT:
        raise No("Quota root does not exist.")
    await _send_quota(s)
    return "Getquota completed."


HANDLERS: HandlerTable = {
    "GETMETADATA": ("auth", cmd_getmetadata),
    "SETMETADATA": ("auth", cmd_setmetadata),
    "GETQUOTAROOT": ("auth", cmd_getquotaroot),
    "GETQUOTA": ("auth", cmd_getquota),
}
