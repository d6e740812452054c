"""Client autoconfiguration (Thunderbird's XML format, which Delta Chat reads) and MTA-STS."""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from relay.config import Config
from relay.core.zone import mta_sts_policy
from relay.web.types import Request, Response, text_response

if TYPE_CHECKING:
    from relay.app import App


def servers(config: Config) -> list[tuple[str, str, int, str]]:
    """(direction, type, port, socketType) for every enabled client port, implicit TLS first."""
    listen = config.listen
    candidates = [
        ("incomingServer", "imap", listen.imaps, "SSL"),
        ("incomingServer", "imap", listen.imap, "STARTTLS"),
        ("outgoingServer", "smtp", listen.submissions, "SSL"),
        ("outgoingServer", "smtp", listen.submission, "STARTTLS"),
    ]
    return [entry for entry in candidates if entry[2]]


def render_config_xml(config: Config) -> str:
    domain = escape(config.address_domain)
    host = escape(config.mail_domain)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<clientConfig version="1.1">',
        f'  <emailProvider id="{domain}">',
        f"    <domain>{domain}</domain>",
        f"    <displayName>{host} chatmail relay</displayName>",
        f"    <displayShortName>{host}</displayShortName>",
    ]
    for direction, kind, port, socket_type in servers(config):
        lines += [
            f'    <{direction} type="{kind}">',
            f"      <hostname>{host}</hostname>",
            f"      <port>{port}</port>",
            f"      <socketType>{socket_type}</socketType>",
            "      <username>%EMAILADDRESS%</username>",
            "      <authentication>password-cleartext</authentication>",
            f"    </{direction}>",
        ]
    lines += ["  </emailProvider>", "</clientConfig>", ""]
    return "\n".join(lines)


async def config_xml(request: Request, app: App) -> Response:
    body = render_config_xml(app.config).encode()
    return Response(
        200, body, "application/xml; charset=utf-8", [("Cache-Control", "max-age=3600")]
    )


async def mta_sts(request: Request, app: App) -> Response:
    policy = mta_sts_policy(app.config)
    if policy is None:
        return text_response(404, "no MTA-STS policy for this relay\n")
    return text_response(200, policy, headers=[("Cache-Control", "max-age=3600")])
