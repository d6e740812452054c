"""The Shadowsocks password and the `ss://` link Delta Chat scans (SIP002).

`ss://` + base64url without padding of `method:password` + `@host:port#tag`; every client
version parses that form, and Delta Chat sets `proxy_url` and `proxy_enabled` from it. The host
is the mail domain (an IPv4 address in LAN mode). The password is `[shadowsocks] password`, or
one generated once into the data dir (`shadowsocks-password`, mode 0600).

Every user gets the same link: the password keeps the port silent for scanners and probes that
do not know it, it does not tell users apart.
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

from relay.config import Config
from relay.durable import load_or_create_secret

PASSWORD_FILE = "shadowsocks-password"


def password(config: Config) -> str:
    if config.shadowsocks.password:
        return config.shadowsocks.password
    return load_or_create_secret(Path(config.data_dir) / PASSWORD_FILE).decode()


def proxy_url(config: Config) -> str | None:
    """The link for users, or None while Shadowsocks is off."""
    ss = config.shadowsocks
    if not (ss.enabled and ss.port):
        return None
    userinfo = base64.urlsafe_b64encode(f"{ss.cipher}:{password(config)}".encode())
    host = config.url_host
    tag = quote(config.mail_domain, safe="")
    return f"ss://{userinfo.decode().rstrip('=')}@{host}:{ss.port}#{tag}"
