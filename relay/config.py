"""The relay's one configuration file: TOML, validated completely at start.

Every key has the official chatmail relay's default (chatmail.ini), defined with its section in
relay.config_sections; relay.config_checks holds the checks of the values. A problem is reported
as a `ConfigError` naming the key, so `relay serve` can stop with exit code 2 and a useful
message. Import everything from here: the sections and `Config` are re-exported.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any

from relay import config_checks
from relay.config_sections import (
    SHADOWSOCKS_CIPHERS,
    TLS,
    TLS_MODES,
    Accounts,
    Config,
    ConfigError,
    Federation,
    Iroh,
    Limits,
    Listen,
    Metadata,
    Privacy,
    Push,
    Retention,
    Shadowsocks,
    Store,
    Turn,
    Update,
    WebIMAP,
    is_ip_address,
)

__all__ = [  # the sections and their allowed values, read from here
    "SHADOWSOCKS_CIPHERS",
    "TLS_MODES",
    "TLS",
    "Accounts",
    "Config",
    "ConfigError",
    "Federation",
    "Iroh",
    "Limits",
    "Listen",
    "Metadata",
    "Privacy",
    "Push",
    "Retention",
    "Shadowsocks",
    "Store",
    "Turn",
    "Update",
    "WebIMAP",
    "is_ip_address",
]

SIZE_RE = re.compile(r"\s*([0-9]{1,19})\s*([KMGT]?)B?\s*", re.IGNORECASE)  # used with fullmatch
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
HOSTNAME_LABEL_RE = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")  # used with fullmatch
SIZE_KEY_SUFFIXES = ("_size", "_space", "_bytes_in_flight")  # these may be given as "500M"


def load(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError naming the first bad key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e.reason} at byte {e.start}") from None
    return loads(text, path)


def loads(text: str, path: str | Path) -> Config:
    """Validate the text of the config file at `path` (relative data_dir from its directory)."""
    path = Path(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except ValueError as e:  # an integer of thousands of digits
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    config = from_dict(raw, base_dir=path.parent)
    return dataclasses.replace(config, source=path.resolve())


def from_dict(raw: dict[str, Any], *, base_dir: Path = Path(".")) -> Config:
    raw = dict(raw)
    sections = {}
    for f in dataclasses.fields(Config):
        if f.name in ("mail_domain", "data_dir", "source"):
            continue
        value = raw.pop(f.name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"[{f.name}]: must be a table, got {_show(value)}")
        assert f.default_factory is not dataclasses.MISSING  # every section has defaults
        sections[f.name] = _build_section(f.name, f.default_factory(), value)
    if "mail_domain" not in raw:
        raise ConfigError("mail_domain: missing (a DNS name, or an IPv4 address for LAN mode)")
    mail_domain = _check_domain(raw.pop("mail_domain"))
    data_dir = raw.pop("data_dir", None)
    if not isinstance(data_dir, str) or not data_dir or "\0" in data_dir:
        raise ConfigError(f"data_dir: must be a non-empty path string, got {_show(data_dir)}")
    if raw:
        raise ConfigError(f"{sorted(raw)[0]}: unknown key")
    config = Config(mail_domain=mail_domain, data_dir=(base_dir / data_dir).resolve(), **sections)
    config_checks.check(config)
    return config


def _build_section(name: str, default: Any, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(default)}
    parsed = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{name}.{key}: unknown key")
        parsed[key] = _coerce(f"{name}.{key}", getattr(default, key), value)
    return dataclasses.replace(default, **parsed)


def _coerce(key: str, default: Any, value: Any) -> Any:
    """Check a value against the type of its default (sizes may be given as "500M")."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, got {_show(value)}")
        return value
    if isinstance(default, int):
        if isinstance(value, str) and key.endswith(SIZE_KEY_SUFFIXES):
            return _parse_size(key, value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be an integer, got {_show(value)}")
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
        return value
    if isinstance(default, list):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: must be a list of strings, got {_show(value)}")
        if any("\0" in v for v in value):
            raise ConfigError(f"{key}: must not contain a NUL character")
        if not value and key == "listen.address":
            raise ConfigError(f"{key}: needs at least one address")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string, got {_show(value)}")
    if "\0" in value:  # paths and names: the OS refuses NUL, and no value needs it
        raise ConfigError(f"{key}: must not contain a NUL character")
    return value


def _parse_size(key: str, text: str) -> int:
    m = SIZE_RE.fullmatch(text)
    if not m:
        raise ConfigError(f"{key}: not a size like 500M or 2G: {text!r}")
    return int(m.group(1)) * SIZE_UNITS[m.group(2).upper()]


def _check_domain(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"mail_domain: must be a non-empty string, got {_show(value)}")
    domain = value.strip().lower().strip("[]").removeprefix("ipv6:")
    if is_ip_address(domain):
        return str(ipaddress.ip_address(domain))  # one spelling: "0::1" is "::1"
    labels = domain.split(".")
    if len(domain) > 253 or not all(HOSTNAME_LABEL_RE.fullmatch(label) for label in labels):
        raise ConfigError(f"mail_domain: not a DNS name or IP address: {value!r}")
    return domain


def to_toml(config: Config) -> str:
    """Serialise a config as the TOML `relay init` writes (every key, so operators see them)."""
    lines = [
        f"mail_domain = {_toml(config.mail_domain)}",
        f"data_dir = {_toml(str(config.data_dir))}",
    ]
    for f in dataclasses.fields(config):
        section = getattr(config, f.name)
        if not dataclasses.is_dataclass(section) or isinstance(section, type):
            continue
        lines += ["", f"[{f.name}]"]
        lines += [f"{k} = {_toml(v)}" for k, v in dataclasses.asdict(section).items()]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + _TOML_ESCAPES.sub(_toml_escape, str(value)) + '"'


# A TOML basic string may not hold ", \ or control characters other than tab as they are.
_TOML_ESCAPES = re.compile(r'["\\\x00-\x08\x0a-\x1f\x7f]')
_TOML_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_escape(match: re.Match[str]) -> str:
    char = match.group()
    return _TOML_SHORT.get(char) or f"\\u{ord(char):04x}"


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"
