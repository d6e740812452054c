"""A real browser renders the invite page; the QR in its screenshot onboards a working account."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio

from tests.helpers import make_config, require_tool
from tests.web.client import fetch
from tests.web.conftest import DOMAIN, domain_config
from tests.web.test_login import imap_login
from tests.web.test_new import parse_dclogin

PHONE_WINDOW = "412,915"  # a common phone viewport in CSS pixels


@pytest.fixture
def relay_config(request, tmp_path):
    if "domain" in request.node.name:
        return domain_config(tmp_path)
    return make_config(tmp_path / "data")


async def screenshot(url: str, tmp_path: Path, *extra: str) -> Path:
    chromium = require_tool("chromium")
    png = tmp_path / "invite.png"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={PHONE_WINDOW}",
        f"--screenshot={png}",
        *extra,
        url,
    ]
    with trio.fail_after(120):
        await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    assert png.exists() and png.stat().st_size > 0
    return png


async def decode_qr(png: Path) -> str:
    zbarimg = require_tool("zbarimg")
    with trio.fail_after(30):
        result = await trio.run_process(
            [zbarimg, "--quiet", "--raw", str(png)], capture_stdout=True, check=False
        )
    assert result.returncode == 0, f"zbarimg found no QR code in {png}"
    codes = result.stdout.decode().splitlines()
    assert len(codes) == 1, codes
    return codes[0]


async def first_login(relay_server, addr: str, password: str) -> None:
    """Log in the way a client would: over IMAP (the first login creates the account)."""
    with trio.fail_after(30):
        await trio.to_thread.run_sync(imap_login, relay_server, addr, password)
    assert await relay_server.app.store.account_exists(addr)


async def test_lan_invite_page_qr_onboards_a_working_account(relay_server, tmp_path):
    url = f"http://{relay_server.host}:{relay_server.port('http')}/"
    link = await decode_qr(await screenshot(url, tmp_path))
    addr, params = parse_dclogin(link)
    assert addr.endswith(f"@{relay_server.domain}")
    assert params["ic"] == "3" and params["ih"] == relay_server.host
    await first_login(relay_server, addr, params["p"])


async def test_domain_invite_page_qr_leads_to_new(relay_server, tmp_path):
    https = relay_server.port("https")
    # The browser does not know the test certificate; the client below checks it.
    png = await screenshot(
        f"https://{relay_server.host}:{https}/", tmp_path, "--ignore-certificate-errors"
    )
    link = await decode_qr(png)
    assert link == f"DCACCOUNT:https://{DOMAIN}:{https}/new"  # the test relay is not on 443
    # What Delta Chat does with it: POST to the URL over checked TLS.
    target = urlsplit(link.split(":", 1)[1])
    tls = ssl.create_default_context(cafile=relay_server.config.tls.cert)
    reply = await fetch(relay_server.host, https, "POST", target.path, tls=tls, sni=target.hostname)
    assert reply.status == 200
    answer = reply.json()
    await first_login(relay_server, answer["email"], answer["password"])
