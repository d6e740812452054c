"""relay/config_edit.py, the one writer of relay.toml: a change keeps everything else of the file
as it was, is validated as `relay serve` would load it, and a refused one leaves the file alone."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import pytest

from relay import config as config_mod
from relay import config_edit
from relay.config import TLS, Config, ConfigError, Limits, Listen, Turn

HAND_WRITTEN = """\
# The relay of the Müller family.
mail_domain = "chat.example.org"   # public name
data_dir    = "data"

[limits]
# Videos from the holidays.
max_message_size = 104857600  # 100 MiB
max_recipients   = 50

[accounts]
registration_open = true

[tls]
mode = "self-signed"
"""


@pytest.fixture
def relay_toml(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "relay.toml"
    path.parent.mkdir()
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    return path


def test_keys_name_every_setting_of_every_section() -> None:
    assert "mail_domain" in config_edit.KEYS
    for key in ("limits.max_message_size", "accounts.registration_open", "turn.port", "tls.mode"):
        assert key in config_edit.KEYS
    assert "data_dir" not in config_edit.KEYS and "source" not in config_edit.KEYS
    sections = [f for f in dataclasses.fields(Config) if f.name not in ("mail_domain", "data_dir")]
    sections = [f for f in sections if f.name != "source"]
    expected = sum(len(dataclasses.fields(f.default_factory())) for f in sections)  # type: ignore[misc]
    assert len(config_edit.KEYS) == expected + 1
    config = Config.embedded_default(Path("/tmp/x"))
    for key in config_edit.KEYS:  # every key can be read back
        config_edit.get_value(config, key)


def test_a_change_keeps_comments_order_and_layout_of_everything_else(relay_toml: Path) -> None:
    config = config_edit.set_values(relay_toml, {"limits.max_recipients": 80})
    assert relay_toml.read_text() == HAND_WRITTEN.replace(
        "max_recipients   = 50", "max_recipients   = 80"
    )
    assert config.limits.max_recipients == 80
    assert config.limits.max_message_size == 104857600
    assert config == config_mod.load(relay_toml)  # source and data_dir as `relay serve` has them


def test_a_key_not_in_the_file_is_added_to_its_table_or_a_new_one(relay_toml: Path) -> None:
    config_edit.set_values(
        relay_toml, {"accounts.jit": False, "turn.port": 0, "privacy.privacy_mail": "a@b.org"}
    )
    text = relay_toml.read_text()
    assert text.startswith(HAND_WRITTEN.split("[accounts]")[0])  # the rest untouched
    assert "[accounts]\nregistration_open = true\njit = false\n" in text
    config = config_mod.load(relay_toml)
    assert config.accounts.jit is False and config.turn.port == 0
    assert config.privacy.privacy_mail == "a@b.org"


def test_a_bad_value_is_refused_with_the_loaders_message_and_the_file_is_unchanged(
    relay_toml: Path,
) -> None:
    before = relay_toml.read_bytes()
    with pytest.raises(ConfigError, match=r"limits.max_message_size: too small \(10 bytes\)"):
        config_edit.set_values(relay_toml, {"limits.max_message_size": 10})
    # The whole file is checked: this value is fine alone but not with the rest.
    with pytest.raises(ConfigError, match="limits.max_mailbox_size: must be at least"):
        config_edit.set_values(relay_toml, {"limits.max_mailbox_size": 2048})
    with pytest.raises(ConfigError, match="tls.mode: must be one of"):
        config_edit.set_values(relay_toml, {"tls.mode": "none"})
    with pytest.raises(ConfigError, match="accounts.jit: must be true or false"):
        config_edit.set_values(relay_toml, {"accounts.jit": "maybe"})
    assert relay_toml.read_bytes() == before
    assert os.listdir(relay_toml.parent) == ["relay.toml"]  # no temporary file left behind


def test_several_changes_apply_together_or_not_at_all(relay_toml: Path) -> None:
    before = relay_toml.read_bytes()
    with pytest.raises(ConfigError, match="listen.smtp"):
        config_edit.set_values(relay_toml, {"accounts.jit": False, "listen.smtp": 70000})
    assert relay_toml.read_bytes() == before
    # Each alone would be refused (a mailbox below the message size); together they fit.
    config = config_edit.set_values(
        relay_toml, {"limits.max_message_size": 4096, "limits.max_mailbox_size": 8192}
    )
    assert (config.limits.max_message_size, config.limits.max_mailbox_size) == (4096, 8192)


def test_reset_removes_the_key_so_the_default_applies(relay_toml: Path) -> None:
    config = config_edit.set_values(relay_toml, {"limits.max_message_size": None})
    assert config.limits.max_message_size == Limits().max_message_size
    assert "max_message_size" not in relay_toml.read_text()
    assert "# Videos from the holidays." in relay_toml.read_text()
    before = relay_toml.read_bytes()
    config_edit.set_values(relay_toml, {"turn.port": None, "limits.max_message_size": None})
    assert relay_toml.read_bytes() == before  # nothing to reset: nothing written


def test_mail_domain_is_set_at_the_top_not_in_the_last_table(relay_toml: Path) -> None:
    config = config_edit.set_values(relay_toml, {"mail_domain": "10.0.0.7"})
    assert config.mail_domain == "10.0.0.7" and config.is_lan
    assert relay_toml.read_text().startswith(
        '# The relay of the Müller family.\nmail_domain = "10.0.0.7"   # public name\n'
    )


def test_a_relative_data_dir_stays_relative_to_the_file_not_the_caller(
    relay_toml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = config_edit.set_values(relay_toml, {"accounts.jit": False})
    assert config.data_dir == relay_toml.parent / "data"
    assert config.source == relay_toml.resolve()


def test_the_files_mode_is_kept(relay_toml: Path) -> None:
    relay_toml.chmod(0o640)
    config_edit.set_values(relay_toml, {"accounts.jit": False})
    assert relay_toml.stat().st_mode & 0o777 == 0o640


def test_tables_written_as_dotted_keys_or_inline_are_edited_in_place(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('mail_domain = "a.example"\ndata_dir = "d"\nlimits.max_recipients = 5\n')
    config_edit.set_values(path, {"limits.max_recipients": 6})
    assert path.read_text().endswith("limits.max_recipients = 6\n")
    path.write_text('mail_domain = "a.example"\ndata_dir = "d"\nturn = {port = 0}\n')
    config_edit.set_values(path, {"turn.max_lifetime": 900})
    assert config_mod.load(path).turn == Turn(port=0, max_lifetime=900)


def test_a_file_that_is_no_table_where_a_section_belongs_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('mail_domain = "a.example"\ndata_dir = "d"\nlimits = 5\n')
    with pytest.raises(ConfigError, match=r"\[limits\]: must be a table"):
        config_edit.set_values(path, {"limits.max_recipients": 6})


def test_broken_or_missing_files_are_reported_and_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    with pytest.raises(ConfigError, match="file not found"):
        config_edit.set_values(path, {"accounts.jit": False})
    assert not path.exists()
    path.write_text('mail_domain = "a.example"\n[limits\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_edit.set_values(path, {"accounts.jit": False})
    assert path.read_text() == 'mail_domain = "a.example"\n[limits\n'


def test_a_broken_setting_can_be_repaired(relay_toml: Path) -> None:
    relay_toml.write_text(HAND_WRITTEN.replace("= 50", "= 0"))  # max_recipients must be >= 1
    with pytest.raises(ConfigError, match="max_recipients"):
        config_mod.load(relay_toml)
    config_edit.set_values(relay_toml, {"limits.max_recipients": 10})
    assert config_mod.load(relay_toml).limits.max_recipients == 10


def test_unknown_and_unsettable_keys_are_refused_by_name(relay_toml: Path) -> None:
    config = config_mod.load(relay_toml)
    with pytest.raises(ConfigError, match="limits.max_mesage_size: unknown key"):
        config_edit.get_value(config, "limits.max_mesage_size")
    with pytest.raises(ConfigError, match="limits: unknown key"):
        config_edit.parse_value("limits", "5")
    with pytest.raises(ConfigError, match="nosuch.key: unknown key"):
        config_edit.set_values(relay_toml, {"nosuch.key": 1})
    with pytest.raises(ConfigError, match="data_dir: cannot be set"):
        config_edit.set_values(relay_toml, {"data_dir": "/elsewhere"})
    assert config_edit.get_value(config, "data_dir") == str(relay_toml.parent / "data")


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("accounts.registration_open", "yes", True),
        ("accounts.registration_open", "Off", False),
        ("accounts.registration_open", "0", False),
        ("accounts.jit", "true", True),
        ("limits.max_recipients", "250", 250),
        ("limits.max_message_size", "30M", 30 << 20),
        ("limits.max_message_size", "31457280", 31457280),
        ("accounts.min_free_disk_space", "1G", 1 << 30),
        ("limits.max_message_bytes_in_flight", "512M", 512 << 20),
        ("listen.address", "0.0.0.0, ::", ["0.0.0.0", "::"]),
        ("listen.address", '["10.0.0.1"]', ["10.0.0.1"]),
        ("federation.policy_domains", "", []),
        ("privacy.privacy_mail", "privacy@example.org", "privacy@example.org"),
        ("privacy.privacy_mail", '"privacy@example.org"', "privacy@example.org"),
        ("metadata.comment", '"quoted" in the middle', '"quoted" in the middle'),
        ("tls.mode", "files", "files"),
    ],
)
def test_text_values_become_the_type_of_the_key(key: str, text: str, value: object) -> None:
    assert config_edit.parse_value(key, text) == value


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("accounts.jit", "maybe", "accounts.jit: must be true or false"),
        ("limits.max_recipients", "30M", "limits.max_recipients: must be an integer"),
        ("limits.max_recipients", "-1", "limits.max_recipients: must not be negative"),
        ("limits.max_message_size", "lots", "limits.max_message_size: not a size like 500M"),
        ("listen.address", "[1, 2]", "listen.address: must be a list of strings"),
        ("listen.address", "[oops", "listen.address: not a TOML value"),
    ],
)
def test_bad_text_values_are_refused_naming_the_key(key: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_edit.parse_value(key, text)


def test_what_get_prints_set_takes_back_for_every_key() -> None:
    config = dataclasses.replace(
        Config.embedded_default(Path("/tmp/x")),
        listen=Listen(address=["127.0.0.1", "::1"]),
        federation=dataclasses.replace(Config.embedded_default(Path("/")).federation,
                                       policy_domains=["a.example", 'q"uote'],),
    )  # fmt: skip
    for key in config_edit.KEYS:
        value = config_edit.get_value(config, key)
        assert config_edit.parse_value(key, config_edit.toml_literal(value)) == value, key


def test_restart_required_names_what_cannot_change_live() -> None:
    old = Config.embedded_default(Path("/tmp/x"))
    new = dataclasses.replace(
        old,
        mail_domain="10.0.0.9",
        listen=dataclasses.replace(old.listen, smtp=2626),
        tls=TLS(mode="files", cert="/c.pem", key="/k.pem"),
        turn=Turn(port=0),
        limits=Limits(max_message_size=2048),
        store=dataclasses.replace(old.store, backend="postgresql", dsn="host=db"),
    )
    assert config_edit.restart_required(old, new) == [
        "mail_domain", "listen.smtp", "tls.mode", "store.backend", "store.dsn",
    ]  # fmt: skip
    assert config_edit.restart_required(old, old) == []
    live = config_edit.keep_restart_only(old, new)
    assert live.limits.max_message_size == 2048 and live.tls.cert == "/c.pem"  # these apply
    assert live.turn == new.turn  # the reload restarts the TURN service with it
    assert (live.mail_domain, live.listen, live.tls.mode, live.store) == (
        old.mail_domain, old.listen, old.tls.mode, old.store,
    )  # fmt: skip


def test_writers_at_the_same_time_lose_no_change(relay_toml: Path) -> None:
    keys = ["limits.max_user_send_per_minute", "limits.max_user_send_burst_size",
            "limits.max_connections_per_ip", "limits.max_connections_per_account",
            "limits.new_account_per_minute", "limits.new_account_burst"]  # fmt: skip
    errors: list[BaseException] = []

    def write(key: str) -> None:
        try:
            for n in range(1, 6):
                config_edit.set_values(relay_toml, {key: n})
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(key,)) for key in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    config = config_mod.load(relay_toml)
    assert [config_edit.get_value(config, key) for key in keys] == [5] * len(keys)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_root_rewriting_the_relay_users_file_leaves_it_the_relay_users(relay_toml: Path) -> None:
    os.chown(relay_toml, 4321, 4322)
    relay_toml.chmod(0o600)
    config_edit.set_values(relay_toml, {"accounts.jit": False})
    st = relay_toml.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4321, 4322, 0o600)
