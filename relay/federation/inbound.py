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
- 500 "451 4.3.0 ..." when our storage failed: the sender must retry.
"""

from __future__ import annotations

from typing import Any

from relay.delivery import deliver
from relay.federation.origin import origin_check
from relay.federation.policy import REJECT_REPLY
from relay.policy.checks import check_incoming
from relay.smtp.dataframe import DataReader
from relay.smtp.events import unstuff
from relay.web.types import Request, Response

TOO_BIG = "552 Message exceeds maximum size"
INVALID_DATA = "500 Invalid DATA"
STORAGE_FAILED = "451 4.3.0 Error: queue file write error"

Reply = tuple[int, bytes]


def _reply(status: int, line: str) -> Reply:
    return status, line.encode("utf-8", "replace")


def _addresses(values: list[str]) -> list[str]:
    """Header values to addresses: repeated headers, or one header with commas, <> optional."""
    found = []
    for value in values:
        for part in value.split(","):
            addr = part.strip().removeprefix("<").removesuffix(">").strip()
            if addr:
                found.append(addr)
    return found


def _is_mailbox(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain) and not any(c in address for c in " <>\r\n\t")


def transmission_problem(body: bytes, max_size: int) -> str | None:
    """The SMTP DATA framing rules applied to a /mxdeliv body (SMTP transmission form)."""
    reader = DataReader(max_size)
    rest = reader.feed(body + b".\r\n")
    result = reader.result
    if result is None or rest or result.problem is not None:
        return TOO_BIG if result is not None and result.problem == "too-big" else INVALID_DATA
    return None


async def mxdeliv(app: Any, request_headers: list[tuple[str, str]], body: bytes) -> Reply:
    config, log = app.config, app.log
    max_size = config.limits.max_message_size
    if len(body) > max_size:
        return _reply(413, TOO_BIG)
    headers = [(name.lower(), value) for name, value in request_headers]
    senders = _addresses([v for k, v in headers if k == "x-mail-from"])
    recipients = list(
        dict.fromkeys(a.lower() for a in _addresses([v for k, v in headers if k == "x-mail-to"]))
    )
    sender = senders[0] if senders else ""
    if len(senders) > 1 or (sender and not _is_mailbox(sender)):
        return _reply(400, "501 5.1.7 Bad sender address syntax")
    if not recipients:
        return _reply(400, "554 5.5.1 Error: no valid recipients")
    for rcpt in recipients:
        if not _is_mailbox(rcpt):
            return _reply(400, "501 5.1.3 Bad recipient address syntax")
        if not config.is_local_address(rcpt):
            return _reply(400, f"554 5.7.1 <{rcpt}>: Relay access denied")
    problem = transmission_problem(body, max_size)
    if problem is not None:
        return _reply(413 if problem == TOO_BIG else 400, problem)
    content = unstuff(body)
    decision = check_incoming(content, sender, recipients)
    refusal = decision.reply or await origin_check(app, content, sender)
    if refusal is not None:
        log.info("mxdeliv-rejected", sender=log.redact(sender), reply=refusal[:80])
        return _reply(403 if refusal == REJECT_REPLY else 400, refusal)
    try:
        result = await deliver(app, decision.mail_from, recipients, content)
    except Exception as e:  # storage trouble: the sender keeps the message and retries
        log.error("mxdeliv-delivery-failed", error=repr(e))
        return _reply(500, STORAGE_FAILED)
    if not result.accepted:
        return _reply(400, next(iter(result.failed.values())))
    log.info("mxdeliv-accepted", kind=decision.kind, local=len(result.delivered), size=len(body))
    return _reply(200, "250 OK")


async def route(request: Request, app: Any) -> Response:
    """The web server's handler for POST /mxdeliv (see relay.web.routes)."""
    status, body = await mxdeliv(app, request.headers, request.body)
    return Response(status, body)
