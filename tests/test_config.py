"""Config validation: every mistake stops `relay` with exit code 2 and names the key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from relay import config as config_mod
from relay.config import Config

GOOD = """\
mail_domain = "chat.example.org"
data_dir = "data"
[listen]
address = ["127.0.0.1"]
smtp = 2525
"""

BAD_CONFIGS = [
    # (config text, words the message must contain)
    ('data_dir = "d"\n', "mail_domain: missing"),
    ('mail_domain = "bad domain!"\ndata_dir = "d"\n', "mail_domain: not a DNS name"),
    ('mail_domain = 42\ndata_dir = "d"\n', "mail_domain: must be a non-empty string"),
    ('mail_domain = "a.org"\n', "data_dir: must be a non-empty path"),
    ('mail_domain = "a.org"\ndata_dir = "d"\ncolour = "blue"\n', "colour: unknown key"),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[limits]\nmax_message_size = "big"\n',
        "limits.max_message_size: not a size",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[limits]\nmax_mailbox_size = "500X"\n',
        "limits.max_mailbox_size: not a size",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[listen]\nsmtp = 70000\n',
        "listen.smtp: port must be",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[listen]\nimap = 25\n',
        "listen.imap: port 25 is already used by listen.smtp",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[listen]\naddress = ["localhost"]\n',
        "listen.address: not an IP address",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[listen]\nproxy_from = ["10.0.0.0/33"]\n',
        "listen.proxy_from: not an IP address or network: '10.0.0.0/33'",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[listen]\nproxy_protocol = true\n',
        "listen.proxy_from: needs the load balancer's addresses",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[tls]\nmode = "letsencrypt"\n',
        "tls.mode: must be one of",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[tls]\nmode = "files"\n',
        'tls.cert: mode = "files" needs',
    ),
    (
        'mail_domain = "10.0.0.2"\ndata_dir = "d"\n[tls]\nmode = "acme"\n',
        "tls.mode: acme needs a DNS name",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[accounts]\njit = "yes"\n',
        "accounts.jit: must be true or false",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[accounts]\nusername_min_length = 12\n',
        "accounts.username_max_length: must be >=",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[accounts]\npassword_min_length = 3\n',
        "accounts.password_min_length: must be at least 8",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[retention]\ndelete_mails_after = 0\n',
        "retention.delete_mails_after: must be at least 1 day",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[privacy]\nno_log = 1\n',
        "privacy.no_log: must be true or false",
    ),
    ('mail_domain = "a.org"\ndata_dir = "d"\nlisten = 5\n', "[listen]: must be a table"),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[limits]\nmax_user_send_per_minute = -1\n',
        "limits.max_user_send_per_minute: must not be negative",
    ),
    ("mail_domain = \n", "not valid TOML"),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[webimap]\ncors_origins = ["app.example/x"]\n',
        "webimap.cors_origins: not an origin",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[webimap]\nenabled = "yes"\n',
        "webimap.enabled: must be true or false",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[webimap]\nidle_timeout = 30\n',
        "webimap.idle_timeout: must be longer than webimap.ping_interval",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[webimap]\nsend_queue = 0\n',
        "webimap.send_queue: must be at least 1",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[store]\nbackend = "sqlite"\n',
        "store.backend: must be one of embedded, postgresql",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[store]\nbackend = "postgresql"\n',
        'store.dsn: backend = "postgresql" needs a connection string',
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[store]\npool_size = 0\n',
        "store.pool_size: must be 1..1000",
    ),
    (
        'mail_domain = "a.org"\ndata_dir = "d"\n[store]\nnode_name = "node one"\n',
        "store.node_name: letters, digits",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "relay", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert message in result.stderr
    assert result.stderr.startswith("relay: config error:")


def test_serve_refuses_bad_config_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('mail_domain = "a.org"\ndata_dir = "d"\n[limits]\nmax_message_size = 10\n')
    result = subprocess.run(
        [sys.executable, "-m", "relay", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "limits.max_message_size: too small" in result.stderr


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(config_mod.ConfigError, match="file not found"):
        config_mod.load(tmp_path / "nope.toml")


def test_defaults_follow_the_chatmail_relay(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(GOOD)
    config = config_mod.load(path)
    assert config.data_dir == (tmp_path / "data").resolve()
    assert config.limits.max_message_size == 31457280
    assert config.limits.max_mailbox_size == 500 * 1024 * 1024
    assert (config.limits.max_user_send_per_minute, config.limits.max_user_send_burst_size) == (
        60,
        10,
    )
    assert (config.accounts.username_min_length, config.accounts.username_max_length) == (9, 9)
    assert config.accounts.password_min_length == 9
    assert (config.retention.delete_mails_after, config.retention.delete_large_after) == (20, 7)
    assert config.retention.delete_inactive_users_after == 90
    assert config.listen.services()["smtp"] == 2525 and config.listen.imaps == 993
    assert config.address_domain == "chat.example.org" and not config.is_lan
    # WebIMAP is off, and sends nothing and allows no origin until told, as madmail
    assert (config.webimap.enabled, config.webimap.send, config.webimap.cors_origins) == (
        False,
        False,
        [],
    )
    assert (config.webimap.ping_interval, config.webimap.idle_timeout) == (30, 60)


def test_listen_behind_a_balancer_is_read(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(
        'mail_domain = "a.org"\ndata_dir = "d"\n[listen]\nproxy_protocol = true\n'
        'proxy_from = ["10.0.0.5", "fd00::/64"]\n'
    )
    listen = config_mod.load(path).listen
    assert listen.proxy_protocol and listen.proxy_from == ["10.0.0.5", "fd00::/64"]
    assert "proxy_protocol" not in listen.services()


def test_store_section_is_read(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    assert config_mod.load(_written(path, GOOD)).store.backend == "embedded"
    text = GOOD + '\n[store]\nbackend = "postgresql"\ndsn = "host=db.lan dbname=relay"\n'
    store = config_mod.load(_written(path, text + 'node_name = "node-2"\npool_size = 4\n')).store
    assert (store.backend, store.dsn, store.node_name, store.pool_size) == (
        "postgresql", "host=db.lan dbname=relay", "node-2", 4,
    )  # fmt: skip


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_webimap_section_is_read(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(
        GOOD + "\n[webimap]\nenabled = true\nsend = true\n"
        'cors_origins = ["https://app.example", "http://localhost:5173"]\n'
    )
    web = config_mod.load(path).webimap
    assert web.enabled and web.send
    assert web.cors_origins == ["https://app.example", "http://localhost:5173"]


def test_byte_sizes_may_be_written_with_units(tmp_path: Path) -> None:
    limits = {
        "max_mailbox_size": "2G",
        "max_message_bytes_in_flight": "128M",
        "max_message_size": "10M",
    }
    config = config_mod.from_dict({"mail_domain": "a.org", "data_dir": "d", "limits": limits})
    assert config.limits.max_mailbox_size == 2 << 30
    assert config.limits.max_message_bytes_in_flight == 128 << 20
    assert config.limits.max_message_size == 10 << 20


def test_lan_mode_addresses_use_ip_literals(tmp_path: Path) -> None:
    config = config_mod.from_dict({"mail_domain": "192.168.1.20", "data_dir": str(tmp_path)})
    assert config.is_lan
    assert config.address_domain == "[192.168.1.20]"
    assert config.is_local_address("abc@[192.168.1.20]")
    assert not config.is_local_address("abc@192.168.1.20.example")


@pytest.mark.parametrize("written", ["fd00::2", "[FD00:0::2]", "[IPv6:fd00::2]", "IPv6:FD00::2"])
def test_lan_mode_on_an_ipv6_address_uses_the_ipv6_address_literal(
    tmp_path: Path, written: str
) -> None:
    config = config_mod.from_dict({"mail_domain": written, "data_dir": str(tmp_path)})
    assert config.is_lan and config.mail_domain == "fd00::2"
    assert config.address_domain == "[IPv6:fd00::2]"  # RFC 5321: an IPv6 literal is tagged
    assert config.url_host == "[fd00::2]"
    assert config.is_local_address("abc@[IPv6:fd00::2]")
    assert config.is_local_address("abc@[ipv6:FD00::2]")  # as case-insensitive as the IPv4 form
    assert not config.is_local_address("abc@[fd00::2]")


def test_a_zoned_ipv6_address_is_no_mail_domain(tmp_path: Path) -> None:
    with pytest.raises(config_mod.ConfigError, match="mail_domain"):
        config_mod.from_dict({"mail_domain": "fe80::1%eth0", "data_dir": str(tmp_path)})


def test_port_zero_disables_a_listener(tmp_path: Path) -> None:
    config = config_mod.from_dict(
        {"mail_domain": "a.org", "data_dir": "d", "listen": {"http": 0, "imap": 0}}
    )
    assert "http" not in config.listen.services() and "imap" not in config.listen.services()


def test_init_writes_a_config_that_loads_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "relay",
            "init",
            "--domain",
            "chat.example.org",
            "--data-dir",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = config_mod.load(data / "relay.toml")
    assert config.mail_domain == "chat.example.org"
    assert config.tls.mode == "acme"  # a public name gets a real certificate, as the anchor does
    assert config.cert_path.exists() and config.key_path.stat().st_mode & 0o077 == 0
    token = data / "admin_token"  # the dashboard's login exists before the first start
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text().strip()) == 64
    again = subprocess.run(
        [sys.executable, "-m", "relay", "init", "--domain", "x.org", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "exists" in again.stderr


@pytest.mark.parametrize(
    ("domain", "mode"),
    [("10.0.0.2", "self-signed"), ("fd00::2", "self-signed"), ("_relay.test", "self-signed")],
)
def test_init_uses_self_signed_tls_for_lan_and_underscore_domains(
    tmp_path: Path, domain: str, mode: str
) -> None:
    from relay.cli import main

    assert main(["init", "--domain", domain, "--data-dir", str(tmp_path / "d")]) == 0
    assert config_mod.load(tmp_path / "d" / "relay.toml").tls.mode == mode


def test_to_toml_round_trips(tmp_path: Path) -> None:
    config = Config.embedded_default(tmp_path)
    path = tmp_path / "relay.toml"
    path.write_text(config_mod.to_toml(config))
    loaded = config_mod.load(path)
    assert loaded.listen == config.listen and loaded.limits == config.limits


# Found by fuzzing relay.config.load (tests/fuzz): each of these escaped as a ValueError,
# UnicodeDecodeError or RecursionError (a traceback instead of exit code 2), or loaded.
HOSTILE_CONFIGS = [
    (b'mail_domain = "a.org"\ndata_dir = "\xc8"\n', "not UTF-8 text"),
    (b'mail_domain = "a.org"\ndata_dir = "d\\u0000x"\n', "data_dir: must be a non-empty path"),
    (b'mail_domain = "a.org"\ndata_dir = "d"\n[tls]\ncert = "a\\u0000"\n', "tls.cert: must not"),
    (b'mail_domain = "a.org"\ndata_dir = "d"\n[limits]\nmax_message_size = ' + b"9" * 5000, "TOML"),
    (
        b'mail_domain = "a.org"\ndata_dir = "d"\n[limits]\nmax_mailbox_size = "'
        + b"9" * 5000
        + b'"',
        "limits.max_mailbox_size: not a size",
    ),
    (b'mail_domain = "a.org"\ndata_dir = "d"\nx = ' + b"[" * 5000 + b"]" * 5000, "nested"),
    (b'mail_domain = "a\\n.org"\ndata_dir = "d"\n', "mail_domain: not a DNS name"),
]


@pytest.mark.parametrize(("data", "message"), HOSTILE_CONFIGS)
def test_hostile_config_files_are_config_errors(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "relay.toml"
    path.write_bytes(data)
    with pytest.raises(config_mod.ConfigError, match=message):
        config_mod.load(path)


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(config_mod.ConfigError, match="cannot be read"):
        config_mod.load(tmp_path)


def test_to_toml_escapes_control_characters(tmp_path: Path) -> None:
    """Found by fuzzing: a value with a control character (privacy_mail = "a\\u0001@b") loaded,
    but to_toml wrote it raw, so the file `relay init` wrote could not be read back."""
    odd = 'x\x01\x7f\n\r\t\b\f"\\@é\u2028'
    config = dataclasses.replace(
        Config.embedded_default(tmp_path),
        privacy=config_mod.Privacy(privacy_mail=odd),
        metadata=config_mod.Metadata(comment=odd),
    )
    path = tmp_path / "relay.toml"
    path.write_text(config_mod.to_toml(config))
    loaded = config_mod.load(path)
    assert loaded.privacy.privacy_mail == odd and loaded.metadata.comment == odd
