"""overlay/.../chatmail-setup: the settings file from the boot partition and the relay config
whose LAN-mode domain follows the box's address. Run against a temporary root."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from relay import config as relay_config

SCRIPT = Path(__file__).resolve().parents[2] / "overlay/usr/libexec/chatmail/chatmail-setup"


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The script as a module, with CHATMAIL_ROOT at a temporary directory."""
    monkeypatch.setenv("CHATMAIL_ROOT", str(tmp_path))
    # `relay init` must be the relay of this checkout (the venv's console script).
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    loader = importlib.machinery.SourceFileLoader("chatmail_setup", str(SCRIPT))
    spec = importlib.util.spec_from_loader("chatmail_setup", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    (tmp_path / "data" / "system").mkdir(parents=True)
    (tmp_path / "data" / "relay").mkdir()
    return module


def with_address(monkeypatch: pytest.MonkeyPatch, setup, address: str | None) -> None:
    monkeypatch.setattr(setup, "current_ipv4", lambda: address)
    monkeypatch.setattr(setup, "IP_WAIT_SECONDS", 0)
    monkeypatch.setattr(setup, "IP_RECHECK_SECONDS", 0)


def test_settings_file_is_parsed_and_bad_lines_are_reported(setup) -> None:
    text = (
        "\ufeff# written by flash.sh\n"
        "hostname=Haus7\n"
        'wifi_ssid="Haus 7 = WLAN"\n'
        "wifi_psk=short\n"
        "wifi_country=de\n"
        "registration_open=no\n"
        "colour=blue\n"
        "just a line\n"
    )
    settings, problems = setup.parse_settings(text)
    assert settings == {
        "hostname": "haus7",
        "wifi_ssid": "Haus 7 = WLAN",
        "wifi_country": "DE",
        "registration_open": "false",
    }
    assert len(problems) == 3
    assert any("wifi_psk" in p for p in problems)
    assert any("colour" in p for p in problems)


def test_wifi_config_stores_the_derived_key_not_the_passphrase(setup) -> None:
    # IEEE 802.11i-2004 annex H.4 test vector: passphrase "password", SSID "IEEE".
    text = setup.wpa_config("IEEE", "password", "DE")
    assert "psk=f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e" in text
    assert f"ssid={b'IEEE'.hex()}" in text and "country=DE" in text
    assert "password" not in text


def test_applied_settings_land_on_data(setup, tmp_path: Path) -> None:
    setup.apply_settings(
        {"hostname": "box", "wifi_ssid": "net", "wifi_psk": "12345678", "mail_domain": "auto"}
    )
    system = tmp_path / "data" / "system"
    assert (system / "hostname").read_text() == "box\n"
    assert json.loads((system / "settings.json").read_text()) == {"mail_domain": "auto"}
    assert (system / "wpa_supplicant-wlan0.conf").stat().st_mode & 0o777 == 0o600


def test_lan_domain_follows_the_address(
    setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay_toml = tmp_path / "data" / "relay" / "relay.toml"
    with_address(monkeypatch, setup, "192.168.1.20")
    assert setup.relay_config() == 0
    first = relay_config.load(relay_toml)
    assert first.mail_domain == "192.168.1.20" and first.is_lan

    with_address(monkeypatch, setup, "192.168.1.33")  # the router handed out a new lease
    setup.relay_config()
    assert relay_config.load(relay_toml).mail_domain == "192.168.1.33"
    # The relay itself replaces a self-signed certificate that names another address.

    with_address(monkeypatch, setup, None)  # no network at this boot: keep what we had
    setup.relay_config()
    assert relay_config.load(relay_toml).mail_domain == "192.168.1.33"


def test_settings_from_the_card_fix_domain_and_registration(
    setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.apply_settings(
        {
            "mail_domain": "chat.example.org",
            "registration_open": "false",
            "privacy_mail": "admin@example.org",
        }
    )
    with_address(monkeypatch, setup, "192.168.1.20")
    setup.relay_config()
    config = relay_config.load(tmp_path / "data" / "relay" / "relay.toml")
    assert config.mail_domain == "chat.example.org"
    assert config.accounts.registration_open is False
    assert config.privacy.privacy_mail == "admin@example.org"


def test_a_privacy_mail_with_control_characters_is_refused_and_never_breaks_relay_toml(
    setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by fuzzing: privacy_mail=a<U+0001>@b was accepted and written into relay.toml as it
    was, which made the file invalid TOML and `chatmail-setup relay-config` fail at every start."""
    settings, problems = setup.parse_settings("privacy_mail=pri\x01vacy@example.org\n")
    assert settings == {} and problems == [
        "line 1: privacy_mail: not an e-mail address: 'pri\\x01vacy@example.org'"
    ]
    # What is accepted reaches relay.toml exactly, quotes and backslashes included.
    odd = "'a\"\\\\b@é.example'"  # quoted as a TOML literal string would be
    assert setup.parse_settings(f"privacy_mail={odd}\n") == ({"privacy_mail": odd}, [])
    setup.apply_settings({"privacy_mail": odd})
    with_address(monkeypatch, setup, "192.168.1.20")
    assert setup.relay_config() == 0
    config = relay_config.load(tmp_path / "data" / "relay" / "relay.toml")
    assert config.privacy.privacy_mail == odd


def test_relay_config_keeps_what_an_operator_wrote_in_relay_toml(
    setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay_toml = tmp_path / "data" / "relay" / "relay.toml"
    with_address(monkeypatch, setup, "192.168.1.20")
    setup.relay_config()
    text = (
        relay_toml.read_text()
        .replace("[limits]\n", "# raised for the family's videos\n[limits]\n")
        .replace("max_message_size = 31457280", "max_message_size = 104857600  # 100 MiB")
    )
    relay_toml.write_text(text)

    setup.apply_settings({"registration_open": "false"})
    with_address(monkeypatch, setup, "192.168.1.33")
    setup.relay_config()
    after = relay_toml.read_text()
    assert "# raised for the family's videos\n[limits]\n" in after
    assert "max_message_size = 104857600  # 100 MiB\n" in after
    config = relay_config.load(relay_toml)
    assert config.mail_domain == "192.168.1.33"
    assert config.accounts.registration_open is False
    # Only the two values changed, line for line.
    changed = [(a, b) for a, b in zip(text.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [
        ('mail_domain = "192.168.1.20"', 'mail_domain = "192.168.1.33"'),
        ("registration_open = true", "registration_open = false"),
    ]
    assert relay_toml.stat().st_mode & 0o777 == 0o600


def test_a_change_the_relay_would_refuse_leaves_relay_toml_as_it_was(
    setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator switched to ACME certificates by hand, then the card says an IP address: the
    relay could not start with both, so relay.toml keeps its domain and the relay starts."""
    relay_toml = tmp_path / "data" / "relay" / "relay.toml"
    with_address(monkeypatch, setup, "192.168.1.20")
    setup.relay_config()
    text = relay_toml.read_text()
    text = text.replace('mail_domain = "192.168.1.20"', 'mail_domain = "chat.example.org"')
    relay_toml.write_text(text.replace('mode = "self-signed"', 'mode = "acme"'))
    before = relay_toml.read_bytes()

    setup.apply_settings({"mail_domain": "192.168.1.20"})
    assert setup.relay_config() == 0
    assert relay_toml.read_bytes() == before
    assert "acme needs a DNS name" in capsys.readouterr().err


def test_the_relay_asks_the_system_for_the_reboot_after_an_update(
    setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay cannot reboot as its own user: its reboot command creates the file that
    chatmail-update-reboot.path watches. An operator's own command stays."""
    relay_toml = tmp_path / "data" / "relay" / "relay.toml"
    with_address(monkeypatch, setup, "192.168.1.20")
    setup.relay_config()
    request = tmp_path / "data" / "relay" / "update" / "reboot-requested"
    assert relay_config.load(relay_toml).update.reboot_command == f"touch {request}"
    unit = (SCRIPT.parents[2] / "lib/systemd/system/chatmail-update-reboot.path").read_text()
    assert "PathExists=/data/relay/update/reboot-requested" in unit.splitlines()

    relay_toml.write_text(
        relay_toml.read_text().replace(f'"touch {request}"', '"systemctl reboot"')
    )
    setup.relay_config()
    assert relay_config.load(relay_toml).update.reboot_command == "systemctl reboot"
