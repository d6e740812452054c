"""Connection-level commands: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE, ID,
ENABLE, COMPRESS. Logins go through relay.core.accounts.authenticate() (JIT creation, the
throttle shared with SMTP); never a password over an unencrypted connection."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from relay.core.accounts import authenticate
from relay.net import tls_handshake

from . import respond
from .commands import Command, HandlerTable
from .compress import DeflateStream
from .errors import Bad, Disconnect, No

if TYPE_CHECKING:
    from .session import Session

# Shown before and after login (the anchor's test_capabilities reads them right after connect).
_BASE = "IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+"
_PUSH = "XDELTAPUSH"  # only while push is on: the apps then rely on it instead of polling
_CHATMAIL = "XCHATMAIL"
_AFTER_LOGIN = "NAMESPACE UIDPLUS MOVE CONDSTORE SPECIAL-USE UNSELECT CHILDREN QUOTA METADATA"
AUTH_FAILED = "Authentication failed."


def capabilities(s: Session) -> str:
    chatmail = f"{_PUSH} {_CHATMAIL}" if s.app.config.push.url else _CHATMAIL
    if s.user is not None:
        extra = "" if s.compressed else " COMPRESS=DEFLATE"
        return f"{_BASE} {_AFTER_LOGIN}{extra} {chatmail}"
    if not s.tls:
        return f"{_BASE} STARTTLS LOGINDISABLED {chatmail}"
    return f"{_BASE} AUTH=PLAIN {chatmail}"


async def cmd_capability(s: Session, cmd: Command) -> str:
    s.send(respond.untagged(respond.Atom("CAPABILITY " + capabilities(s))))
    return "Capability completed."


async def cmd_noop(s: Session, cmd: Command) -> str:
    return "NOOP completed."


async def cmd_logout(s: Session, cmd: Command) -> str:
    s.send(respond.status("BYE", "Logging out."))
    s.logged_out = True
    return "Logout completed."


async def cmd_starttls(s: Session, cmd: Command) -> str:
    if s.tls:
        raise Bad("TLS is already active.")
    # Anything the client pipelined behind STARTTLS was sent in clear: drop it (CVE-2011-0411).
    s.take_buffered_input()

    async def switch() -> None:
        tls_stream = await tls_handshake(s.stream, s.app.tls.context)
        if tls_stream is None:
            raise Disconnect("TLS handshake failed or timed out")
        s.stream = tls_stream
        s.tls = True

    s.after_response = switch
    return "Begin TLS negotiation now."


async def cmd_login(s: Session, cmd: Command) -> tuple[str, str]:
    user, password = cmd.args
    return await _login(s, user.decode("utf-8", "replace"), password.decode("utf-8", "replace"))


async def cmd_authenticate(s: Session, cmd: Command) -> tuple[str, str]:
    mechanism, initial = cmd.args
    if mechanism != "PLAIN":
        raise No("Unsupported authentication mechanism.")
    if not s.tls:
        raise No(
            "Plaintext authentication disallowed on non-secure connections.", "PRIVACYREQUIRED"
        )
    if initial is None:
        s.send(respond.continuation())
        await s.flush()
        initial = await s.read_auth_line()
    if initial.strip() == b"*":
        raise Bad("Authentication aborted.")
    try:
        raw = b"" if initial == b"=" else base64.b64decode(initial, validate=True)
        authzid, authcid, password = raw.split(b"\0")
    except (binascii.Error, ValueError):
        raise Bad("Invalid AUTHENTICATE PLAIN response.") from None
    if authzid and authzid != authcid:
        raise No(AUTH_FAILED, "AUTHENTICATIONFAILED")
    return await _login(s, authcid.decode("utf-8", "replace"), password.decode("utf-8", "replace"))


async def _login(s: Session, user: str, password: str) -> tuple[str, str]:
    if not s.tls:
        raise No(
            "Plaintext authentication disallowed on non-secure connections.", "PRIVACYREQUIRED"
        )
    app = s.app
    outcome = await authenticate(app, s.peer.ip, user, password, via=s.service)
    if outcome.verdict == "unavailable":
        raise No("Insufficient system storage, try again later.", "UNAVAILABLE")
    if not outcome.ok:
        raise No(AUTH_FAILED, "AUTHENTICATIONFAILED")
    addr = outcome.addr
    if not app.admission.per_account.claim(addr, app.config.limits.max_connections_per_account):
        raise No("Too many connections for this account.", "LIMIT")
    s.user = addr
    s.engine.max_message = app.config.limits.max_message_size
    await s.open_watch()
    return "CAPABILITY " + capabilities(s), "Logged in"


async def cmd_id(s: Session, cmd: Command) -> str:
    s.send(respond.untagged(respond.Atom("ID"), ("name", "chatmail-relay-appliance")))
    return "ID completed."


async def cmd_enable(s: Session, cmd: Command) -> str:
    enabled = []
    if "CONDSTORE" in cmd.args:
        s.condstore = True
        if s.selected is not None:
            s.selected.condstore = True
        enabled.append("CONDSTORE")
    s.send(respond.untagged(respond.Atom(" ".join(["ENABLED", *enabled]))))
    return "Enabled."


async def cmd_compress(s: Session, cmd: Command) -> str:
    if cmd.args[0] != "DEFLATE":
        raise Bad("Unknown compression mechanism.")
    if s.compressed:
        raise No("Compression already active.", "COMPRESSIONACTIVE")
    leftover = s.take_buffered_input()

    async def switch() -> None:
        s.stream = DeflateStream(s.stream, leftover)
        s.compressed = True

    s.after_response = switch
    return "Begin compression."


HANDLERS: HandlerTable = {
    "CAPABILITY": ("any", cmd_capability),
    "NOOP": ("any", cmd_noop),
    "LOGOUT": ("any", cmd_logout),
    "STARTTLS": ("nonauth", cmd_starttls),
    "LOGIN": ("nonauth", cmd_login),
    "AUTHENTICATE": ("nonauth", cmd_authenticate),
    "ID": ("any", cmd_id),
    "ENABLE": ("auth", cmd_enable),
    "COMPRESS": ("auth", cmd_compress),
}
