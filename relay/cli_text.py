"""Text for the operator's commands: `relay invite` (the onboarding link and a terminal QR),
`relay status` and `relay admin-token`."""

from __future__ import annotations

from typing import Any

from relay.config import Config
from relay.onboarding import dcaccount_url, dclogin_url, new_credentials
from relay.shadowsocks.link import proxy_url
from relay.web import qr
from relay.web.onboard import needs_dclogin


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


def status_text(status: dict[str, Any]) -> str:
    """The admin status as a few aligned lines."""
    health = status["health"]
    problems = f" ({'; '.join(health['problems'])})" if health["problems"] else ""
    connections = ", ".join(f"{k} {v}" for k, v in sorted(status["connections"].items()) if v)
    lines = [
        f"relay {status['domain']}: {health['state']}{problems}",
        f"  accounts     {status['accounts']}",
        f"  uptime       {status['uptime']} s",
        f"  disk         {status['disk_used_percent']}% used",
        f"  queue        {status['queue']['messages']} messages waiting for other relays",
        f"  connections  {connections or 'none'}",
        f"  received     {status['received_messages']} messages since the start",
        f"  sent         {status['sent_messages']} recipients at {status['email_servers']}"
        " other relays",
    ]
    return "\n".join(lines) + "\n"


def dashboard_url(config: Config, token: str) -> str:
    """The dashboard with the token in the fragment: a browser never sends it to a server."""
    port = config.listen.https
    where = config.url_host if port == 443 else f"{config.url_host}:{port}"
    return f"https://{where}/admin#token={token}"


def admin_token_text(config: Config, token: str) -> str:
    url = dashboard_url(config, token)
    return (
        f"Admin token (keep it secret; it is {config.data_dir / 'admin_token'}):\n  {token}\n\n"
        f"Dashboard login link:\n  {url}\n\n{qr.terminal(url)}"
    )
