"""Onboarding credentials and the links a client scans: DCACCOUNT and dclogin.

The credentials follow the anchor's /new: a random lower-case alphanumeric local part of
`username_max_length` characters and a password of `password_min_length + 3` characters from
letters, digits and punctuation. The account itself is created at the first login.
"""

from __future__ import annotations

import secrets
import string
from collections import OrderedDict
from urllib.parse import quote

from relay.config import Config

LOCALPART_ALPHABET = string.ascii_lowercase + string.digits
PASSWORD_ALPHABET = string.ascii_letters + string.digits + string.punctuation
RECENT_ADDRESSES = 100_000  # issued but maybe never used: never hand them out twice


class IssuedAddresses:
    """Addresses handed out recently (bounded, oldest forgotten first)."""

    def __init__(self) -> None:
        self._recent: OrderedDict[str, None] = OrderedDict()

    def remember(self, addr: str) -> bool:
        """Record an issued address; False if it was issued before."""
        if addr in self._recent:
            return False
        self._recent[addr] = None
        while len(self._recent) > RECENT_ADDRESSES:
            self._recent.popitem(last=False)
        return True


def new_credentials(config: Config) -> tuple[str, str]:
    length = config.accounts.username_max_length
    localpart = "".join(secrets.choice(LOCALPART_ALPHABET) for _ in range(length))
    pw_length = config.accounts.password_min_length + 3
    password = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(pw_length))
    return f"{localpart}@{config.address_domain}", password


def dcaccount_url(config: Config) -> str:
    """The QR for domain mode: the client POSTs to /new over strictly checked HTTPS."""
    port = config.listen.https
    host = config.url_host if port in (0, 443) else f"{config.url_host}:{port}"
    return f"DCACCOUNT:https://{host}/new"


def dclogin_url(config: Config, addr: str, password: str) -> str:
    """A complete login for clients that cannot use /new (LAN mode, self-signed TLS).

    Hosts and ports are explicit so the client neither guesses `imap.<domain>` nor relies on
    standard ports; `ic=3` accepts the self-signed certificate.
    """
    params = [f"p={quote(password, safe='')}", "v=1"]
    host = quote(config.mail_domain, safe="")  # a bare IP, "::1" too: the client connects to it
    listen = config.listen
    if listen.imaps:
        params += [f"ih={host}", f"ip={listen.imaps}", "is=ssl"]
    elif listen.imap:
        params += [f"ih={host}", f"ip={listen.imap}", "is=starttls"]
    if listen.submissions:
        params += [f"sh={host}", f"sp={listen.submissions}", "ss=ssl"]
    elif listen.submission:
        params += [f"sh={host}", f"sp={listen.submission}", "ss=starttls"]
    if config.tls.mode == "self-signed":
        params.append("ic=3")
    return f"dclogin:{quote(addr, safe='@[]:')}?" + "&".join(params)
