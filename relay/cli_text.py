"""Text for the operator's commands: `relay dns` (the zone records) and `relay invite`."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from urllib.parse import urlsplit

from relay.config import Config
from relay.onboarding import dcaccount_url, dclogin_url, new_credentials
from relay.outbound.dkim import dkim_dns_record
from relay.shadowsocks.link import proxy_url
from relay.web import acme, qr
from relay.web.autoconfig import mta_sts_policy
from relay.web.onboard import needs_dclogin

TTL = 3600
KNOWN_CAA_ISSUERS = {"letsencrypt.org": "letsencrypt.org"}  # directory host suffix -> CAA name
# Addresses in documentation ranges: connecting a UDP socket there sends nothing but makes the
# kernel pick the source address of the default route.
ROUTE_PROBES = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _configured_addresses(config: Config) -> list[Address]:
    found = [ipaddress.ip_address(a) for a in config.listen.address]
    return [a for a in found if not (a.is_unspecified or a.is_loopback)]


def _routed_addresses() -> list[Address]:
    found: list[Address] = []
    for family, probe in ROUTE_PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                found.append(ipaddress.ip_address(s.getsockname()[0]))
        except OSError:
            continue  # no route for this family
    return found


def address_records(config: Config) -> list[str]:
    name = f"{config.mail_domain}."
    addresses = _configured_addresses(config) or _routed_addresses()
    lines = []
    for addr in addresses:
        kind = "A" if addr.version == 4 else "AAAA"
        if addr.is_global:
            lines.append(f"{name} {TTL} IN {kind} {addr}")
        else:
            lines.append(
                f"; {name} {TTL} IN {kind} {addr}  <- not public: use the address on the internet"
            )
    if not any(addr.is_global for addr in addresses):
        lines.append(f"; {name} {TTL} IN A <this relay's public IPv4 address>")
    return lines


def caa_record(config: Config) -> str:
    name = f"{config.mail_domain}."
    host = urlsplit(config.tls.acme_directory).hostname or ""
    issuer = next((ca for suffix, ca in KNOWN_CAA_ISSUERS.items() if host.endswith(suffix)), None)
    if issuer is None:
        return f'; {name} {TTL} IN CAA 0 issue "<your CA\'s CAA domain; directory {host}>"'
    account = acme.account_uri(config)
    value = f"{issuer};accounturi={account}" if account else issuer
    return f'{name} {TTL} IN CAA 0 issue "{value}"'


def dns_records(config: Config) -> str:
    """Zone-file lines for every record the operator must (or should) publish."""
    if config.is_lan:
        return (
            f"; {config.mail_domain} runs in LAN mode: clients connect to the IP address "
            "directly, so no DNS records are needed.\n"
        )
    d = f"{config.mail_domain}."
    lines = [
        f"; DNS records for the chatmail relay {config.mail_domain} (TTL {TTL} s)",
        "; required",
    ]
    lines += address_records(config)
    lines.append(f"{d} {TTL} IN MX 10 {d}")
    policy = mta_sts_policy(config)
    if policy is not None:
        policy_id = hashlib.sha256(policy.encode()).hexdigest()[:20]
        lines.append(f"mta-sts.{d} {TTL} IN CNAME {d}")
        lines.append(f'_mta-sts.{d} {TTL} IN TXT "v=STSv1; id={policy_id}"')
    lines.append(dkim_dns_record(config))
    lines.append("; recommended")
    lines.append(f'{d} {TTL} IN TXT "v=spf1 a ~all"')
    lines.append(f'_dmarc.{d} {TTL} IN TXT "v=DMARC1;p=reject;adkim=s;aspf=s"')
    listen = config.listen
    for service, port in (
        ("submission", listen.submission),
        ("submissions", listen.submissions),
        ("imap", listen.imap),
        ("imaps", listen.imaps),
    ):
        if port:
            lines.append(f"_{service}._tcp.{d} {TTL} IN SRV 0 1 {port} {d}")
    if config.tls.mode == "acme":
        lines.append(caa_record(config))
    return "\n".join(lines) + "\n"


def invite_text(config: Config) -> str:
    """The onboarding link with a terminal QR, for `relay invite`; then the ss:// link on a
    line of its own when the Shadowsocks port is on."""
    return _account_invite(config) + _proxy_invite(config)


def _proxy_invite(config: Config) -> str:
    link = proxy_url(config)
    if link is None:
        return ""
    intro = (
        "Where mail ports are blocked: in Delta Chat, Settings > Advanced > Proxy, scan or "
        "paste this Shadowsocks link (the same for everyone):"
    )
    return f"\n{intro}\n\n{qr.terminal(link)}\n{link}\n"


def _account_invite(config: Config) -> str:
    accounts = config.accounts
    if not (accounts.registration_open and accounts.jit):
        return f"Registration on {config.mail_domain} is closed (accounts.registration_open).\n"
    if needs_dclogin(config):
        link = dclogin_url(config, *new_credentials(config))
        intro = (
            f"A new account on {config.mail_domain}. The link holds its password: give it to "
            "one person. Scan it with Delta Chat (Add account > scan QR):"
        )
    else:
        link = dcaccount_url(config)
        intro = f"Scan with Delta Chat to create an account on {config.mail_domain}:"
    return f"{intro}\n\n{qr.terminal(link)}\n{link}\n"
