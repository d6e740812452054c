"""The [turn] section: defaults, and bad values refused with the key named."""

from __future__ import annotations

import pytest

from relay.config import ConfigError, from_dict, to_toml

BASE = {"mail_domain": "chat.example.org", "data_dir": "/tmp/relay-turn-config-test"}


def test_defaults_and_round_trip():
    config = from_dict(BASE)
    assert config.turn.port == 3478 and config.turn.relay_port_range() == (49152, 65535)
    assert config.turn.secret == "" and config.turn.external == ""
    assert not config.turn.allow_loopback_peers and not config.turn.allow_private_peers
    assert "[turn]\nenabled = true\nport = 3478\n" in to_toml(config)


@pytest.mark.parametrize(
    "turn, key",
    [
        ({"port": 70000}, "turn.port"),
        ({"relay_ports": "60000-50000"}, "turn.relay_ports"),
        ({"relay_ports": "80-90"}, "turn.relay_ports"),
        ({"relay_ports": "50000"}, "turn.relay_ports"),
        ({"external": "turn.example.org"}, "turn.external"),
        ({"external": "turn.example.org:0"}, "turn.external"),
        ({"external": "2001:db8::1:3478"}, "turn.external"),
        ({"relay_address": "not-an-ip"}, "turn.relay_address"),
        ({"max_lifetime": 60}, "turn.max_lifetime"),
        ({"allow_loopback_peers": "yes"}, "turn.allow_loopback_peers"),
        ({"unknown": 1}, "turn.unknown"),
    ],
)
def test_bad_values_name_the_key(turn, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict({**BASE, "turn": turn})


def test_external_forms_accepted():
    for external in ("turn.example.org:3478", "198.51.100.7:3478", "[2001:db8::1]:3478"):
        assert from_dict({**BASE, "turn": {"external": external}}).turn.external == external
