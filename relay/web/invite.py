"""GET /: the invite page a person opens or is shown to join this relay.

One static HTML document: no scripts, no external resources, readable on a phone. In domain
mode the QR is the relay's DCACCOUNT link (the client asks /new itself); where clients cannot
check our certificate (LAN mode, self-signed) each visit shows a fresh dclogin link instead.
When the Shadowsocks port is on, a second QR holds its `ss://` link for people whose network
blocks the mail ports (the same link for everyone, shown even while registration is closed).
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

import trio

from relay.config import Config
from relay.onboarding import dcaccount_url, dclogin_url
from relay.shadowsocks.link import proxy_url
from relay.web import qr
from relay.web.onboard import fresh_credentials, needs_dclogin, rate_limited, registration_refusal
from relay.web.types import Request, Response

if TYPE_CHECKING:
    from relay.app import App

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 30rem; margin: 0 auto; padding: 1rem;
       line-height: 1.45; color: #1b1b1b; background: #fff; }
h1 { font-size: 1.4rem; overflow-wrap: anywhere; margin-bottom: .2rem; }
.qr { display: block; width: min(100%, 20rem); margin: 1rem auto; }
.qr svg { width: 100%; height: auto; display: block; shape-rendering: crispEdges; }
.button { display: block; text-align: center; padding: .8rem; border-radius: .5rem;
          background: #364e59; color: #fff; text-decoration: none; font-weight: 600; }
.link { font-family: monospace; font-size: .8rem; overflow-wrap: anywhere; color: #555; }
.note { font-size: .9rem; color: #444; }
.trust { font-size: .9rem; border-left: .25rem solid #c80; padding-left: .6rem; }
h2 { font-size: 1.1rem; margin-top: 2rem; }
"""
PROXY_HELP = (
    "If mail ports are blocked where you are: in Delta Chat, Settings → Advanced → Proxy, "
    "scan this. Delta Chat then reaches this relay through a Shadowsocks proxy; your messages "
    "stay end-to-end encrypted either way."
)


def retention_line(config: Config) -> str:
    r = config.retention
    return (
        f"This relay keeps messages for at most {r.delete_mails_after} days "
        f"(large ones {r.delete_large_after} days) and deletes accounts unused for "
        f"{r.delete_inactive_users_after} days."
    )


def privacy_line(config: Config) -> str:
    contact = config.privacy.privacy_mail
    if not contact:
        return "The operator has not published a privacy contact."
    return f'Privacy contact: <a href="mailto:{escape(contact)}">{escape(contact)}</a>'


def trust_note(config: Config) -> str:
    where = "on this local network" if config.is_lan else "under its own certificate"
    return (
        f"This relay runs {where} with a self-signed certificate, so the link tells Delta Chat "
        "to accept any certificate for this account. It trusts the network between you and "
        "the relay: whoever controls it could watch or tamper with the connection (your "
        "messages stay end-to-end encrypted). Each visit shows a new account; anyone who can "
        "open this page can create one."
    )


def render(
    config: Config,
    *,
    link: str | None,
    qr_svg: str = "",
    problem: str = "",
    proxy: str | None = None,
    proxy_svg: str = "",
) -> str:
    name = escape(config.mail_domain)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{name}: chatmail relay</title><style>{STYLE}</style></head><body>",
        f"<h1>{name}</h1>",
        "<p>A chatmail relay: join with Delta Chat for private, end-to-end encrypted chats.</p>",
    ]
    if link is None:
        parts.append(f"<p><strong>{escape(problem)}</strong></p>")
    else:
        href = escape(link)
        parts += [
            "<p>Scan this code with Delta Chat, or tap it on the phone that has Delta Chat:</p>",
            f'<a class="qr" href="{href}" aria-label="onboarding QR code">{qr_svg}</a>',
            f'<a class="button" href="{href}">Create an account on {name}</a>',
            f'<p class="link">{escape(link)}</p>',
            '<p class="note">No Delta Chat yet? Get it from '
            '<a href="https://delta.chat/download">delta.chat/download</a>.</p>',
        ]
        if needs_dclogin(config):
            parts.append(f'<p class="trust">{escape(trust_note(config))}</p>')
    if proxy:
        parts += [
            "<h2>Mail ports blocked?</h2>",
            f'<p class="note">{escape(PROXY_HELP)}</p>',
            f'<a class="qr" href="{escape(proxy)}" aria-label="proxy QR code">{proxy_svg}</a>',
            f'<p class="link">{escape(proxy)}</p>',
        ]
    parts += [
        f'<p class="note">{escape(retention_line(config))}</p>',
        f'<p class="note">{privacy_line(config)}</p>',
        "</body></html>",
    ]
    return "\n".join(parts)


async def page(request: Request, app: App) -> Response:
    config = app.config
    link, problem = await onboarding_link(request, app)
    # Drawing the QR is CPU work: keep it off the event loop that serves everyone else.
    qr_svg = await trio.to_thread.run_sync(qr.svg, link) if link else ""
    proxy = proxy_url(config)
    proxy_svg = await trio.to_thread.run_sync(qr.svg, proxy) if proxy else ""
    page_html = render(
        config, link=link, qr_svg=qr_svg, problem=problem, proxy=proxy, proxy_svg=proxy_svg
    )
    body = page_html.encode()
    # A dclogin page holds a password: never cache it.
    cache = "no-store" if needs_dclogin(config) else "max-age=300"
    return Response(200, body, "text/html; charset=utf-8", [("Cache-Control", cache)])


async def onboarding_link(request: Request, app: App) -> tuple[str | None, str]:
    config = app.config
    refusal = registration_refusal(app)
    if refusal is not None:
        return None, refusal[1]
    if not needs_dclogin(config):
        return dcaccount_url(config), ""
    if rate_limited(app, request.peer.ip) is not None:
        return None, "Too many new accounts were requested from here; reload in a few seconds."
    credentials = await fresh_credentials(app)
    if credentials is None:
        return None, "Could not find a free address; reload to try again."
    return dclogin_url(config, *credentials), ""
