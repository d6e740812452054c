"""Inbound `/mxdeliv`: another relay hands us a message over HTTP(S).

The checks are the SMTP MX path's, in its order and with its reply lines: size, DATA form, the
PGP gate (relay.policy), the origin check (federation policy, DKIM), recipients in our domain
only. Every refusal carries the SMTP reply line as its body, so a sending relay can pass it on.

Status codes, where the official relay (filtermail) and madmail differ:
- 200 "250 OK" on success (both agree; filtermail switched to 200 for madmail's sake).
- 413 "552 Message exceeds maximum size" (filtermail; madmail v2 also 413).
- 403 "550 5.7.1 Federation policy rejection": madmail's status for its policy, which filtermail
  does not have; the body keeps it final for filtermail-style senders too.
- 400 with the reply line for every other refusal (filtermail). madmail answers 403 for
  unencrypted mail and 404/200 for unknown recipients; a body with the reply line is more
  useful to both kinds of sender than a bare status.
- 500 "451 4.3.0 ..." when our storage failed, 507 "452 4.3.1 Insufficient system storage"
  while the data disk is full: the sender must retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.core.delivery import STORAGE_FAILED, STORAGE_FULL
from relay.core.inbound import (
    BAD_SENDER,
    NO_RECIPIENTS,
    accept_incoming,
    recipient_refusal,
    sender_refusal,
)
from relay.policy.peers import REJECT_REPLY
from relay.reply import Reply
from relay.smtp.dataframe import DataReader
from relay.smtp.events import unstuff
from relay.web.types import Request, Response

if TYPE_CHECKING:
    from relay.app import App

TOO_BIG = Reply(552, "", "Message exceeds maximum size")
INVALID_DATA = Reply(500, "", "Invalid DATA")
ACCEPTED = Reply(250, "", "OK")  # what filtermail and madmail answer


def _answer(status: int, reply: Reply) -> Response:
    return Response(status, str(reply).encode("utf-8", "replace"))


def _addresses(values: list[str]) -> list[str]:
    """Header values to addresses: repeated headers, or one header with commas, <> optional."""
    found = []
    for value in values:
        for part in value.split(","):
            addr = part.strip().removeprefix("<").removesuffix(">").strip()
            if addr:
                found.append(addr)
    return found


def transmission_problem(body: bytes, max_size: int) -> Reply | None:
    """The SMTP DATA framing rules applied to a /mxdeliv body (SMTP transmission form)."""
    reader = DataReader(max_size)
    rest = reader.feed(body + b".\r\n")
    result = reader.result
    if result is None or rest or result.problem is not None:
        return TOO_BIG if result is not None and result.problem == "too-big" else INVALID_DATA
    return None


async def mxdeliv(app: App, request_headers: list[tuple[str, str]], body: bytes) -> Response:
    max_size = app.config.limits.max_message_size
    if len(body) > max_size:
        return _answer(413, TOO_BIG)
    headers = [(name.lower(), value) for name, value in request_headers]
    senders = _addresses([v for k, v in headers if k == "x-mail-from"])
    recipients = list(
        dict.fromkeys(a.lower() for a in _addresses([v for k, v in headers if k == "x-mail-to"]))
    )
    sender = senders[0] if senders else ""
    refusal = BAD_SENDER if len(senders) > 1 else sender_refusal(sender)
    if refusal is None and not recipients:
        refusal = NO_RECIPIENTS
    for rcpt in recipients:
        refusal = refusal or recipient_refusal(app, rcpt)
    if refusal == STORAGE_FULL:
        return _answer(507, refusal)  # before reading the message: nowhere to put it
    if refusal is not None:
        return _answer(400, refusal)
    problem = transmission_problem(body, max_size)
    if problem is not None:
        return _answer(413 if problem == TOO_BIG else 400, problem)
    outcome = await accept_incoming(app, sender, recipients, unstuff(body))
    reply = outcome.reply
    if reply.accepted:
        return _answer(200, ACCEPTED)
    if reply == STORAGE_FAILED:
        return _answer(500, reply)  # the sender keeps the message and retries
    if reply == STORAGE_FULL:
        return _answer(507, reply)  # Insufficient Storage: the sender retries later
    return _answer(403 if reply == REJECT_REPLY else 400, reply)


async def route(request: Request, app: App) -> Response:
    """The web server's handler for POST /mxdeliv (see relay.web.routes)."""
    return await mxdeliv(app, request.headers, request.body)
