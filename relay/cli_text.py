"""Text for the operator's `relay invite`: the onboarding link and a terminal QR."""

from __future__ import annotations

from relay.config import Config
from relay.onboarding import dcaccount_url, dclogin_url, new_credentials
from relay.web import qr
from relay.web.onboard import needs_dclogin


def invite_text(config: Config) -> str:
    """The onboarding link with a terminal QR, for `relay invite`."""
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
