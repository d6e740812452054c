"""Where users get the ss:// link: `relay invite` prints it on a line of its own, and the
invite page shows it as a second QR with what to do with it (a real browser renders the page,
zbarimg reads both codes off the screenshot)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from relay import config as config_mod
from relay.config import Accounts, Config
from relay.shadowsocks import link
from tests.helpers import RelayServer, require_tool
from tests.shadowsocks.test_ss_local import ss_config
from tests.web.client import fetch
from tests.web.test_browser import screenshot
from tests.web.test_new import parse_dclogin


@pytest.fixture
def relay_config(tmp_path: Path) -> Config:
    return ss_config(tmp_path / "data")


def test_relay_invite_prints_the_ss_link_on_its_own_line(tmp_path: Path) -> None:
    config = ss_config(tmp_path / "data")
    path = tmp_path / "relay.toml"
    path.write_text(config_mod.to_toml(config))
    out = subprocess.run(
        [sys.executable, "-m", "relay", "invite", "--config", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    lines = out.splitlines()
    url = link.proxy_url(config)
    assert url in lines and lines[-1] == url
    assert any(line.startswith("dclogin:") for line in lines)  # the account link comes first
    assert "Settings > Advanced > Proxy" in out


def test_closed_registration_still_prints_the_ss_link(tmp_path: Path) -> None:
    from relay.cli_text import invite_text

    config = dataclasses.replace(
        ss_config(tmp_path / "data"), accounts=Accounts(registration_open=False)
    )
    text = invite_text(config)
    assert "closed" in text and text.splitlines()[-1] == link.proxy_url(config)


def test_no_ss_line_while_shadowsocks_is_off(tmp_path: Path) -> None:
    from relay.cli_text import invite_text

    config = dataclasses.replace(ss_config(tmp_path / "data"), shadowsocks=config_mod.Shadowsocks())
    assert "ss://" not in invite_text(config)


async def test_the_invite_page_shows_the_ss_link_as_a_second_qr(
    relay_server: RelayServer, tmp_path: Path
) -> None:
    url = link.proxy_url(relay_server.config)
    assert url is not None
    page = await fetch(relay_server.host, relay_server.port("http"), "GET", "/")
    assert page.status == 200
    assert page.text.count("<svg") == 2
    assert "Settings → Advanced → Proxy" in page.text and url in page.text
    png = await screenshot(
        f"http://{relay_server.host}:{relay_server.port('http')}/",
        tmp_path,
        "--window-size=412,2000",
    )
    zbarimg = require_tool("zbarimg")
    with trio.fail_after(30):
        result = await trio.run_process(
            [zbarimg, "--quiet", "--raw", str(png)], capture_stdout=True, check=False
        )
    codes = sorted(result.stdout.decode().splitlines())
    assert len(codes) == 2, codes
    dclogin, ss = codes
    addr, _ = parse_dclogin(dclogin)
    assert addr.endswith(f"@{relay_server.domain}")
    assert ss == url
