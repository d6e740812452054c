"""The [update] section: defaults, errors naming the key, and the polling service following a
reload (the install worker itself never stops for one)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from relay.config import ConfigError, from_dict, to_toml
from relay.config import load as load_config
from tests.helpers import RelayServer


def test_updates_are_off_by_default_and_polled_at_most_daily() -> None:
    update = from_dict({"mail_domain": "example.org", "data_dir": "/tmp/x"}).update
    assert update.url == "" and update.check_interval == 86400
    assert update.reboot_command == "systemctl reboot" and update.rauc == "rauc"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": "http://updates.example.org/m.json"}, "update.url: must be an https:// URL"),
        ({"check_interval": 600}, "update.check_interval: must be at least 3600"),
        ({"reboot_command": '"unbalanced'}, "update.reboot_command: not a command line"),
        ({"reboot_command": " "}, "update.reboot_command: must not be empty"),
        ({"max_bundle_size": "100K"}, "update.max_bundle_size: must be at least 1M"),
        ({"rauc": ""}, "update.rauc: must not be empty"),
        ({"interval": 1}, "update.interval: unknown key"),
    ],
)
def test_bad_values_name_the_key(values: dict[str, object], message: str) -> None:
    raw = {"mail_domain": "example.org", "data_dir": "/tmp/x", "update": values}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        from_dict(raw)


async def test_a_reload_starts_and_stops_polling(relay_server: RelayServer, tmp_path: Path) -> None:
    app = relay_server.app
    registry = app.services
    assert registry is not None
    assert "update" in registry.running and "update-poll" not in registry.running
    config_file = tmp_path / "relay.toml"
    polling = dataclasses.replace(
        app.config.update, url="https://127.0.0.1:9/manifest.json", check_interval=7200
    )
    config_file.write_text(to_toml(dataclasses.replace(app.config, update=polling)))
    app.config = load_config(config_file)
    outcome = await app.reload()
    assert outcome["applied"], outcome
    assert "update-poll" in registry.running and "update" in registry.running
    config_file.write_text(
        to_toml(dataclasses.replace(app.config, update=relay_server.config.update))
    )
    assert (await app.reload())["applied"]
    assert "update-poll" not in registry.running and "update" in registry.running
