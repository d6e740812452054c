"""Carry one message to all its recipients in one domain: /mxdeliv first, SMTP as fallback.

Exchangers are tried best first. On each, an HTTPS POST to /mxdeliv; if that cannot be done (no
connection, TLS failure, or an answer that is not a chatmail peer's), SMTP on port 25. A real
refusal by a peer (an SMTP reply, over either path) is final for that attempt. After an SMTP
success the exchanger is remembered as "no /mxdeliv" for 30 minutes so plain mail servers do
not cost an HTTPS attempt per message (the official relay's rule).
"""

from __future__ import annotations

import re
import time
from typing import Any

import trio

from relay.outbound import http_client, smtp_client
from relay.outbound.connect import TransportError, client_context, verifies_certificates
from relay.policy.peers import REJECT_REPLY, peer_allowed
from relay.resolver import RouteError, Target, find_targets
from relay.smtp.events import stuff

NO_MXDELIV_SECONDS = 30 * 60
SMTP_LINE_RE = re.compile(rb"^[245]\d\d[ -]")

_no_mxdeliv: dict[tuple[str, int], float] = {}  # (exchanger, port) -> until (monotonic)


def helo_name(config: Any) -> str:
    return config.address_domain  # in LAN mode an address literal, as EHLO wants an IP said


async def deliver_domain(
    app: Any, domain: str, sender: str, recipients: list[str], message: bytes
) -> dict[str, str]:
    """Each recipient's SMTP reply line: 2xx delivered, 4xx try later, 5xx give up."""
    config = app.config
    if not peer_allowed(config, domain):
        return dict.fromkeys(recipients, str(REJECT_REPLY))
    fed = config.federation
    try:
        targets = await find_targets(domain, fed)
    except RouteError as e:
        return dict.fromkeys(recipients, e.reply)
    verify = verifies_certificates(domain)
    ctx = client_context(verify, fed.ca_file)
    last = ""
    for target in targets:
        https_key = (target.host, fed.peer_https_port)
        started = time.monotonic()
        if fed.peer_https_port and _no_mxdeliv.get(https_key, 0) < time.monotonic():
            try:
                reply = await http_client.post_mxdeliv(
                    target.addresses, fed.peer_https_port, target.host, ctx,
                    sender, recipients, stuff(message),
                )  # fmt: skip
            except TransportError as e:
                app.metrics.peer_failed(domain, "http")
                last = f"{target.host}: {e}"
            else:
                if reply.ok:
                    _log(app, domain, target, "https", recipients)
                    elapsed = time.monotonic() - started
                    app.metrics.delivered_to_peer(domain, "http", len(recipients), elapsed)
                    return dict.fromkeys(recipients, "250 OK (HTTPS)")
                app.metrics.peer_failed(domain, "http")
                line = reply.body.strip().split(b"\n", 1)[0]
                if SMTP_LINE_RE.match(line):
                    return dict.fromkeys(recipients, line.decode("utf-8", "replace").rstrip())
                last = f"{target.host}: /mxdeliv answered HTTP {reply.status}"
        try:
            results = await smtp_client.send_smtp(
                target.addresses, fed.peer_smtp_port, target.host,
                None if domain.lower() in smtp_client.PLAINTEXT_DOMAINS else ctx,
                helo_name(config), sender, recipients, message,
            )  # fmt: skip
        except TransportError as e:
            app.metrics.peer_failed(domain, "smtp")
            _no_mxdeliv.pop(https_key, None)
            last = f"{target.host}: {e}"
            continue
        _no_mxdeliv[https_key] = time.monotonic() + NO_MXDELIV_SECONDS
        accepted = [r for r, line in results.items() if line[0] == "2"]
        _log(app, domain, target, "smtp", accepted)
        if accepted:
            elapsed = time.monotonic() - started
            app.metrics.delivered_to_peer(domain, "smtp", len(accepted), elapsed)
        else:
            app.metrics.peer_failed(domain, "smtp")
        return results
    return dict.fromkeys(
        recipients, f"421 Failed to connect to any mail server; last attempt to {last}"
    )


def _log(app: Any, domain: str, target: Target, via: str, recipients: list[str]) -> None:
    if recipients:
        app.log.info(
            "federation-delivered",
            domain=app.log.redact(domain),
            via=via,
            host=app.log.redact(target.host),
            recipients=len(recipients),
        )


async def deliver_all(
    app: Any, sender: str, recipients: list[str], message: bytes
) -> dict[str, str]:
    """Every recipient domain at once; the replies of all recipients."""
    by_domain: dict[str, list[str]] = {}
    for rcpt in recipients:
        by_domain.setdefault(rcpt.rpartition("@")[2].lower(), []).append(rcpt)
    results: dict[str, str] = {}

    async def one(domain: str, rcpts: list[str]) -> None:
        results.update(await deliver_domain(app, domain, sender, rcpts, message))

    async with trio.open_nursery() as nursery:
        for domain, rcpts in by_domain.items():
            nursery.start_soon(one, domain, rcpts)
    return results
