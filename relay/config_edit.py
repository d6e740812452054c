"""The one writer of an existing config file: `relay config set`, the admin API, the appliance.

A change is applied to the TOML text with tomlkit, so comments, order and formatting of
everything else stay as they were; the whole result is validated by the loader `relay serve`
uses (relay.config.loads) and only then written atomically, keeping the file's mode and owner.
A refused change leaves the file byte-identical.

Settings are named by dotted keys, "limits.max_message_size", "mail_domain"; KEYS lists every
one, derived from relay.config's dataclasses so a new section appears here by itself.
RESTART_ONLY says which of them a running relay cannot take over live (relay.server.reload keeps
their old values and says so).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import stat
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions
import tomlkit.items

from relay import admin_call
from relay import config as config_mod
from relay.config import Config, ConfigError
from relay.durable import write_atomically

NOT_SETTABLE = ("data_dir", "source")  # where the data lives moves with the data, by hand
BOOL_WORDS = {
    "true": True, "yes": True, "on": True, "1": True,
    "false": False, "no": False, "off": False, "0": False,
}  # fmt: skip

# What a running relay cannot change live; a section name stands for all of its keys.
# listen.*: the sockets are bound at start. data_dir: the store is open there. mail_domain: the
# store, the certificate and every address hang on it. tls.mode: the certificate source and the
# ACME keeper are set up at start. store: the store is opened once, with its backend, database
# and connection pool. Everything else applies at a reload: relay.server starts,
# stops or restarts the services (TURN, iroh, push, ...) whose sections changed.
RESTART_ONLY = ("mail_domain", "data_dir", "listen", "tls.mode", "store")


def _all_keys() -> list[str]:
    keys = []
    for f in dataclasses.fields(Config):
        if f.name == "source":
            continue
        if f.default_factory is dataclasses.MISSING:  # a top-level value: mail_domain, data_dir
            keys.append(f.name)
            continue
        section = f.default_factory()
        if dataclasses.is_dataclass(section):
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(section)]
    return keys


_ALL_KEYS = _all_keys()  # with data_dir, which can be read but not set
KEYS: tuple[str, ...] = tuple(key for key in _ALL_KEYS if key not in NOT_SETTABLE)


def _check_key(key: str) -> None:
    """A key that can be set (data_dir can only be read)."""
    if key in NOT_SETTABLE and key in _ALL_KEYS:
        raise ConfigError(f"{key}: cannot be set here (move the data and edit the file by hand)")
    if key not in KEYS:
        raise ConfigError(f"{key}: unknown key")


def _default(key: str) -> Any:
    section, _, name = key.rpartition(".")
    if not section:
        return ""  # mail_domain: a string without a default
    factory = next(f for f in dataclasses.fields(Config) if f.name == section).default_factory
    assert factory is not dataclasses.MISSING
    return getattr(factory(), name)


def get_value(config: Config, key: str) -> Any:
    """The value of a dotted key in `config` (data_dir as a string; it cannot be set)."""
    if key not in _ALL_KEYS:
        raise ConfigError(f"{key}: unknown key")
    section, _, name = key.rpartition(".")
    value = getattr(getattr(config, section), name) if section else getattr(config, name)
    if isinstance(value, Path):
        return str(value)
    return list(value) if isinstance(value, list) else value


def parse_value(key: str, text: str) -> Any:
    """A value given as text (command line, settings script) as the type of the key's default.

    Booleans: true/false, yes/no, on/off, 1/0. Integers: digits; sizes (keys ending _size,
    _space, _bytes_in_flight) also as "30M" or "2G". Lists: comma-separated, or a TOML array
    literal. Strings: as given, or a TOML string literal ('"text"', as `relay config get` prints).
    """
    _check_key(key)
    default = _default(key)
    word = text.strip()
    if isinstance(default, bool):
        if word.lower() not in BOOL_WORDS:
            raise ConfigError(f"{key}: must be true or false, got {text!r}")
        return BOOL_WORDS[word.lower()]
    if isinstance(default, int):
        if key.endswith(config_mod.SIZE_KEY_SUFFIXES):
            return config_mod._coerce(key, default, word)  # the loader's own size parser
        try:
            number = int(word, 10)
        except ValueError:
            raise ConfigError(f"{key}: must be an integer, got {text!r}") from None
        return config_mod._coerce(key, default, number)
    if isinstance(default, list):
        if word.startswith("["):
            value = _toml_literal(key, word)
        else:
            value = [item.strip() for item in word.split(",") if item.strip()]
        return config_mod._coerce(key, default, value)
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "\"'":
        try:
            literal = tomllib.loads(f"v = {word}\n")["v"]
        except (tomllib.TOMLDecodeError, ValueError, RecursionError):
            return text  # quotes that are part of the value
        if isinstance(literal, str):
            return literal
    return text


def _toml_literal(key: str, text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}\n")["v"]
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as e:
        raise ConfigError(f"{key}: not a TOML value: {text!r} ({e})") from None


def toml_literal(value: Any) -> str:
    """A value as it is written in the file: 31457280, true, "text", ["a", "b"]."""
    return tomlkit.item(value).as_string()


def edit_text(text: str, changes: dict[str, Any]) -> str:
    """The TOML `text` with `changes` applied (None: remove the key, so its default applies),
    everything else as it was. Checks the keys, not the values: set_values validates."""
    return _edit(_parse(text, "config"), changes)


def _parse(text: str, where: str | Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None


def _edit(doc: tomlkit.TOMLDocument, changes: dict[str, Any]) -> str:
    for key, value in changes.items():
        _check_key(key)
        _apply(doc, key, value)
    return tomlkit.dumps(doc)


def _apply(doc: tomlkit.TOMLDocument, key: str, value: Any) -> None:
    section, _, name = key.rpartition(".")
    table: Any = doc
    if section:
        if section not in doc:
            if value is None:
                return
            doc.add(section, tomlkit.table())
        table = doc[section]
        if not isinstance(table, tomlkit.items.Table | tomlkit.items.InlineTable):
            raise ConfigError(f"[{section}]: must be a table, got {type(table).__name__}")
    if value is None:
        if name in table:
            del table[name]
        return
    if isinstance(value, Path):
        value = str(value)
    try:
        table[name] = tomlkit.item(value)
    except (tomlkit.exceptions.ConvertError, TypeError, ValueError) as e:
        raise ConfigError(f"{key}: cannot be written as TOML: {_show(value)} ({e})") from None


def set_values(path: Path, changes: dict[str, Any]) -> Config:
    """Apply `changes` (dotted key -> value; None resets a key to its default) to the config
    file at `path`, validate the whole result as `relay serve` would load it, write it
    atomically, and return it. On any ConfigError the file is left as it was."""
    path = Path(path)
    for key in changes:
        _check_key(key)
    with _locked(path.parent):  # two writers at once (API and CLI) must not lose a change
        try:
            data = path.read_bytes()
            st = os.stat(path)
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found (write one with `relay init`)") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot be read: {e.strerror or e}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text: {e.reason} at byte {e.start}") from None
        new_text = _edit(_parse(text, path), changes)
        config = config_mod.loads(new_text, path)
        if new_text != text:
            owner = (st.st_uid, st.st_gid) if os.geteuid() == 0 else None
            write_atomically(
                path, new_text.encode("utf-8"), mode=stat.S_IMODE(st.st_mode), owner=owner
            )
    return config


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise ConfigError(f"{directory}: cannot be opened: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _is_restart_only(key: str) -> bool:
    return any(key == entry or key.startswith(entry + ".") for entry in RESTART_ONLY)


def restart_required(old: Config, new: Config) -> list[str]:
    """The keys that differ between `old` and `new` and only take effect at the next start."""
    return [
        key
        for key in _ALL_KEYS
        if _is_restart_only(key) and get_value(old, key) != get_value(new, key)
    ]


def keep_restart_only(old: Config, new: Config) -> Config:
    """`new` with every restart-only key at its value in `old`: what a live reload applies."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key in _ALL_KEYS:
        if not _is_restart_only(key):
            continue
        section, _, name = key.rpartition(".")
        if section:
            sections.setdefault(section, {})[name] = getattr(getattr(old, section), name)
        else:
            top[name] = getattr(old, name)
    for section, values in sections.items():
        top[section] = dataclasses.replace(getattr(new, section), **values)
    return dataclasses.replace(new, **top)


def changed_keys(old: Config, new: Config) -> list[str]:
    """Every key whose value differs between two configs, in file order."""
    return [key for key in _ALL_KEYS if get_value(old, key) != get_value(new, key)]


# -- telling a running relay ------------------------------------------------------------------

RELOAD_TIMEOUT = 30.0


@dataclass(frozen=True)
class ReloadOutcome:
    """What the relay behind `<data_dir>/admin.sock` said to a reload request."""

    running: bool  # something answered on the admin socket
    applied: bool = False
    restart_required: list[str] = field(default_factory=list)
    error: str | None = None


def reload_running_relay(data_dir: Path, *, timeout: float = RELOAD_TIMEOUT) -> ReloadOutcome:
    """Ask a running relay to re-read its config over the admin socket (not running: say so)."""
    try:
        result = admin_call.call(data_dir, "reload", timeout=timeout)
    except admin_call.NotRunning:
        return ReloadOutcome(running=False)
    except admin_call.Refused as e:
        return ReloadOutcome(running=True, error=str(e))
    except OSError as e:
        return ReloadOutcome(running=True, error=f"cannot reach it: {e.strerror or e}")
    except ValueError as e:
        return ReloadOutcome(running=True, error=f"no usable answer: {e}")
    if not isinstance(result, dict):
        return ReloadOutcome(running=True, error="no usable answer")
    return ReloadOutcome(
        running=True,
        applied=bool(result.get("applied")),
        restart_required=[str(k) for k in result.get("restart_required") or []],
        error=result.get("error"),
    )


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"
