"""The [shadowsocks] section and the ss:// link users scan: defaults, bad values refused with
the key named, the password generated once into the data dir, and a link that a standard
SIP002 parser reads back as this relay's method, password, host and port; an identity backup
keeps the password, so the link in users' apps works on the restored box."""

from __future__ import annotations

import base64
import dataclasses
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from relay.config import SHADOWSOCKS_CIPHERS, ConfigError, Shadowsocks, from_dict, to_toml
from relay.shadowsocks import link
from relay.shadowsocks.aead import CIPHERS


def base(tmp_path: Path, **ss: object) -> dict:
    return {"mail_domain": "chat.example.org", "data_dir": str(tmp_path), "shadowsocks": ss}


def test_off_by_default_with_chacha20_and_round_trips(tmp_path: Path) -> None:
    config = from_dict(base(tmp_path))
    assert config.shadowsocks.port == 0 and config.shadowsocks.cipher == "chacha20-ietf-poly1305"
    assert link.proxy_url(config) is None
    assert "[shadowsocks]\nenabled = true\nport = 0\n" in to_toml(config)
    assert set(SHADOWSOCKS_CIPHERS) == set(CIPHERS)


@pytest.mark.parametrize(
    "ss, message",
    [
        ({"port": 70000}, "shadowsocks.port: must be 0"),
        ({"port": 465}, "shadowsocks.port: port 465 is already used by listen.submissions"),
        ({"port": 8388, "cipher": "rc4-md5"}, "shadowsocks.cipher: must be one of"),
        ({"cipher": "2022-blake3-aes-256-gcm"}, "shadowsocks.cipher"),
        ({"password": "two\nlines"}, "shadowsocks.password"),
        ({"probe_timeout": 0}, "shadowsocks.probe_timeout"),
        ({"port": "443"}, "shadowsocks.port: must be an integer"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, ss: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(base(tmp_path, **ss))


def parse_sip002(url: str) -> tuple[str, str, str, int, str]:
    parts = urlsplit(url)
    assert parts.scheme == "ss"
    userinfo = parts.username or ""
    assert "=" not in userinfo and "+" not in userinfo and "/" not in userinfo  # base64url, bare
    method, _, password = (
        base64.urlsafe_b64decode(userinfo + "=" * (-len(userinfo) % 4)).decode().partition(":")
    )
    assert parts.hostname and parts.port
    return method, password, parts.hostname, parts.port, parts.fragment


def test_the_link_carries_method_password_host_and_port(tmp_path: Path) -> None:
    config = from_dict(base(tmp_path, port=8388, cipher="aes-128-gcm", password="p:w d?#@"))
    url = link.proxy_url(config)
    assert url is not None
    assert parse_sip002(url) == (
        "aes-128-gcm",
        "p:w d?#@",
        "chat.example.org",
        8388,
        "chat.example.org",
    )


def test_an_empty_password_is_generated_once_into_the_data_dir(tmp_path: Path) -> None:
    config = from_dict(base(tmp_path, port=443, **{}) | {"listen": {"https": 8443}})
    first = link.proxy_url(config)
    path = tmp_path / link.PASSWORD_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().strip()
    assert len(password) >= 32
    assert first == link.proxy_url(config)  # the same link every time, after restarts too
    assert parse_sip002(first or "")[1] == password


def test_lan_mode_links_name_the_ip(tmp_path: Path) -> None:
    config = from_dict({**base(tmp_path, port=8388), "mail_domain": "192.168.1.20"})
    assert parse_sip002(link.proxy_url(config) or "")[2:4] == ("192.168.1.20", 8388)


async def test_an_identity_backup_keeps_the_link_users_have(tmp_path: Path) -> None:
    from relay.core.admin import local
    from tests.hwctl.fakes import running_app

    ss = Shadowsocks(port=8388)
    async with running_app(tmp_path / "old") as old:
        old.config = dataclasses.replace(old.config, shadowsocks=ss)
        url = link.proxy_url(old.config)  # generates the password
        identity = await local.identity_export(old)
    assert link.PASSWORD_FILE in identity["files"]
    async with running_app(tmp_path / "new") as new:
        new.config = dataclasses.replace(new.config, shadowsocks=ss)
        await local.identity_import(new, identity)
        assert link.proxy_url(new.config) == url
    assert stat.S_IMODE((new.config.data_dir / link.PASSWORD_FILE).stat().st_mode) == 0o600
