"""The `relay` command: init, serve, check-config, config, queue, db, update, status,
admin-token, dns, invite."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from relay import admin_call, config_edit
from relay import config as config_mod
from relay.config import Config, ConfigError
from relay.core.admin.token import ensure_token
from relay.durable import make_dirs, write_atomically
from relay.outbound import dkim, queue_cli
from relay.tls import TLSError, ensure_certificate

EXIT_CONFIG = 2
EMBEDDED_DATA_DIR = Path("relay-data")


Command = Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None, *, serve: Command | None = None) -> int:
    """The `relay` command; `serve` is given by the composition root (relay.server.main)."""
    parser = _parser(serve)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return args.command(args)
    except ConfigError as e:
        print(f"relay: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except TLSError as e:
        print(f"relay: TLS error: {e}", file=sys.stderr)
        return EXIT_CONFIG


def _parser(serve: Command | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="A chatmail relay for Delta Chat.")
    sub = parser.add_subparsers()

    p = sub.add_parser("init", help="write a config file and a data directory")
    p.add_argument("--domain", required=True, help="DNS name, or an IPv4 address for LAN mode")
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument(
        "--config", type=Path, help="where to write the config (default DATA_DIR/relay.toml)"
    )
    p.add_argument(
        "--tls",
        choices=config_mod.TLS_MODES,
        help="default: acme for a DNS name; self-signed for an IP address or a name starting with _",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing config file")
    p.set_defaults(command=cmd_init)

    if serve is not None:
        text = "run the relay (no --config: a local test relay on 127.0.0.1)"
        p = sub.add_parser("serve", help=text)
        p.add_argument("--config", type=Path)
        p.set_defaults(command=serve)

    p = sub.add_parser("check-config", help="validate a config file and exit")
    p.add_argument("config", type=Path)
    p.set_defaults(command=cmd_check_config)

    p = sub.add_parser("config", help="read and change settings in the config file")
    settings = p.add_subparsers(required=True)
    q = settings.add_parser("get", help="print the value of KEY (e.g. limits.max_message_size)")
    q.add_argument("key")
    q.add_argument("--config", type=Path)
    q.set_defaults(command=cmd_config_get)
    q = settings.add_parser(
        "set", help="change settings, validated as `relay serve` would; a running relay reloads"
    )
    q.add_argument("pairs", nargs="*", metavar="KEY VALUE")
    q.add_argument(
        "--reset", action="append", default=[], metavar="KEY", help="back to the default"
    )
    q.add_argument("--config", type=Path, help="the config file (required: relay init wrote it)")
    q.set_defaults(command=cmd_config_set)
    q = settings.add_parser("list", help="print every key = value")
    q.add_argument("--config", type=Path)
    q.set_defaults(command=cmd_config_list)

    p = sub.add_parser("queue", help="look at and steer the outbound queue")
    queue = p.add_subparsers(required=True)
    for name, func, text in (
        ("list", cmd_queue_list, "list queued messages"),
        ("retry", cmd_queue_retry, "try these (default: all) messages now"),
        ("delete", cmd_queue_delete, "drop these messages without a bounce"),
    ):
        q = queue.add_parser(name, help=text)
        q.add_argument("ids", nargs="*")
        q.add_argument("--config", type=Path)
        if name == "list":
            q.add_argument("--json", action="store_true")
        q.set_defaults(command=func)

    p = sub.add_parser("db", help="the PostgreSQL store's database ([store] backend)")
    db = p.add_subparsers(required=True)
    q = db.add_parser("upgrade", help="create or upgrade the tables to this relay's schema")
    q.add_argument("--dsn", help="connection string (default: store.dsn of the config)")
    q.add_argument("--config", type=Path)
    q.set_defaults(command=cmd_db_upgrade)
    q = db.add_parser("migrate", help="copy an embedded store (relay stopped) into the database")
    q.add_argument("--from-embedded", required=True, type=Path, metavar="DATA_DIR")
    q.add_argument("--dsn", help="connection string (default: store.dsn of the config)")
    q.add_argument("--config", type=Path)
    q.set_defaults(command=cmd_db_migrate)

    p = sub.add_parser("update", help="install a signed update bundle, or see how one goes")
    update = p.add_subparsers(required=True)
    q = update.add_parser(
        "install",
        help="install a .raucb file, or what the update manifest at an https:// URL offers",
    )
    q.add_argument("source", metavar="PATH|URL")
    q.add_argument("--config", type=Path)
    q.set_defaults(command=cmd_update_install)
    q = update.add_parser("status", help="the update state: idle, downloading, installing, ...")
    q.add_argument("--config", type=Path)
    q.set_defaults(command=cmd_update_status)

    for name, func, text in (
        ("dns", cmd_dns, "print the DNS records to set for this relay"),
        ("invite", cmd_invite, "print the onboarding link and a terminal QR code"),
        ("status", cmd_status, "what the running relay is doing: health, accounts, counters"),
        ("admin-token", cmd_admin_token, "print the admin token and the dashboard login link"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", type=Path)
        p.set_defaults(command=func)
    return parser


def cmd_init(args: argparse.Namespace) -> int:
    path = args.config or args.data_dir / "relay.toml"
    if path.exists() and not args.force:
        print(f"relay: {path} exists; use --force to overwrite", file=sys.stderr)
        return EXIT_CONFIG
    data_dir = args.data_dir.resolve()
    tls_mode = args.tls or default_tls_mode(args.domain)
    config = config_mod.from_dict(
        {"mail_domain": args.domain, "data_dir": str(data_dir), "tls": {"mode": tls_mode}}
    )
    make_dirs(data_dir)
    ensure_certificate(config)
    dkim.ensure_key(config)
    ensure_token(config)
    write_atomically(path, config_mod.to_toml(config).encode(), mode=0o644)
    print(f"wrote {path}; data in {data_dir}")
    print(f"run: relay serve --config {path}")
    return 0


def default_tls_mode(domain: str) -> str:
    """As the chatmail relay: public names get ACME certificates, test and LAN relays self-signed."""
    if domain.startswith("_") or config_mod.is_ip_address(
        domain.lower().strip("[]").removeprefix("ipv6:")
    ):
        return "self-signed"
    return "acme"


def cmd_check_config(args: argparse.Namespace) -> int:
    config = config_mod.load(args.config)
    print(f"{args.config}: ok (mail_domain {config.mail_domain}, data in {config.data_dir})")
    return 0


def load_or_embedded(path: Path | None) -> Config:
    if path is not None:
        return config_mod.load(path)
    return Config.embedded_default(EMBEDDED_DATA_DIR.resolve())


def cmd_dns(args: argparse.Namespace) -> int:
    from relay.core.zone import dns_records

    print(dns_records(load_or_embedded(args.config)), end="")
    return 0


def cmd_invite(args: argparse.Namespace) -> int:
    from relay.cli_text import invite_text

    print(invite_text(load_or_embedded(args.config)), end="")
    return 0


def cmd_queue_list(args: argparse.Namespace) -> int:
    return queue_cli.queue_list(load_or_embedded(args.config), args)


def cmd_queue_retry(args: argparse.Namespace) -> int:
    return queue_cli.queue_retry(load_or_embedded(args.config), args)


def cmd_queue_delete(args: argparse.Namespace) -> int:
    return queue_cli.queue_delete(load_or_embedded(args.config), args)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    admin = _db_admin(args, "upgrade")
    return admin.upgrade(args.dsn) if admin else EXIT_CONFIG


def cmd_db_migrate(args: argparse.Namespace) -> int:
    admin = _db_admin(args, "migrate")
    return admin.migrate_embedded(args.from_embedded, args.dsn) if admin else EXIT_CONFIG


def _db_admin(args: argparse.Namespace, command: str) -> ModuleType | None:
    """relay.store.postgres.admin with args.dsn filled in, or None after saying what is missing."""
    args.dsn = args.dsn or load_or_embedded(args.config).store.dsn
    if not args.dsn:
        print(f"relay db {command}: no database: pass --dsn, or a config with store.dsn",
              file=sys.stderr)  # fmt: skip
        return None
    try:
        from relay.store.postgres import admin
    except ImportError as e:
        print(f"relay db {command}: {e} (pip install '.[postgresql]')", file=sys.stderr)
        return None
    return admin


def cmd_config_get(args: argparse.Namespace) -> int:
    value = config_edit.get_value(load_or_embedded(args.config), args.key)
    print(config_edit.toml_literal(value))
    return 0


def cmd_config_list(args: argparse.Namespace) -> int:
    config = load_or_embedded(args.config)
    for key in config_edit.KEYS:
        print(f"{key} = {config_edit.toml_literal(config_edit.get_value(config, key))}")
    return 0


def cmd_config_set(args: argparse.Namespace) -> int:
    if len(args.pairs) % 2:
        print("relay config set: expected KEY VALUE pairs", file=sys.stderr)
        return EXIT_CONFIG
    if not args.pairs and not args.reset:
        print("relay config set: nothing to set (KEY VALUE ..., or --reset KEY)", file=sys.stderr)
        return EXIT_CONFIG
    if args.config is None:
        print(
            "relay config set: the embedded default (relay serve without --config) has no "
            "config file to change; write one with `relay init` and pass --config FILE",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    pairs = dict(zip(args.pairs[::2], args.pairs[1::2], strict=True))
    changes: dict[str, object] = {k: config_edit.parse_value(k, v) for k, v in pairs.items()}
    changes |= dict.fromkeys(args.reset)
    try:
        old: Config | None = config_mod.load(args.config)
    except ConfigError:
        old = None  # a broken file may be repaired by this change
    new = config_edit.set_values(args.config, changes)
    changed = config_edit.changed_keys(old, new) if old is not None else list(changes)
    for key in changed:
        before = f"{_literal(old, key)} -> " if old is not None else ""
        print(f"{key}: {before}{_literal(new, key)}")
    if not changed:
        print("nothing changed")
        return 0
    return _tell_running_relay(new)


def _literal(config: Config, key: str) -> str:
    return config_edit.toml_literal(config_edit.get_value(config, key))


def _tell_running_relay(new: Config) -> int:
    outcome = config_edit.reload_running_relay(new.data_dir)
    if not outcome.running:
        print("the relay is not running: the change applies at its next start")
    elif outcome.error:
        print(f"written, but the running relay did not apply it: {outcome.error}", file=sys.stderr)
        return 1
    elif outcome.restart_required:
        rest = "; the rest applied live" if outcome.applied else ""
        print(f"restart needed for: {', '.join(outcome.restart_required)}{rest}")
    elif outcome.applied:
        print("applied live")
    else:
        print("written, but the running relay did not apply it", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from relay.cli_text import status_text

    config = load_or_embedded(args.config)
    try:
        status = admin_call.call(config.data_dir, "status")
    except admin_call.NotRunning as e:
        print(f"relay status: {e}", file=sys.stderr)
        return 1
    except (admin_call.Refused, OSError, ValueError) as e:
        print(f"relay status: the relay did not answer: {e}", file=sys.stderr)
        return 1
    print(status_text(status), end="")
    return 0


UPDATE_POLL = 0.5


def cmd_update_install(args: argparse.Namespace) -> int:
    """Start the install on the running relay and follow it to its end."""
    source = args.source
    params = {"url": source} if "://" in source else {"path": str(Path(source).resolve())}
    config = load_or_embedded(args.config)
    try:
        state = admin_call.call(config.data_dir, "update_install", params)
        last = None
        while True:
            line = update_line(state)
            if line != last:
                print(line, flush=True)
                last = line
            if state["state"] not in ("downloading", "installing"):
                return 0 if state["state"] in ("installed", "idle") else 1
            time.sleep(UPDATE_POLL)
            state = admin_call.call(config.data_dir, "update_status")
    except (admin_call.NotRunning, admin_call.Refused, OSError, ValueError) as e:
        print(f"relay update install: {e}", file=sys.stderr)
        return 1


def cmd_update_status(args: argparse.Namespace) -> int:
    config = load_or_embedded(args.config)
    try:
        state = admin_call.call(config.data_dir, "update_status")
    except (admin_call.NotRunning, admin_call.Refused, OSError, ValueError) as e:
        print(f"relay update status: {e}", file=sys.stderr)
        return 1
    print(update_line(state))
    return 0


def update_line(state: dict[str, object]) -> str:
    """One line for an update state: "installing 2.3 40% Checking bundle done."."""
    parts = [str(state.get("state")), str(state.get("version") or "")]
    if state.get("state") in ("downloading", "installing"):
        parts += [f"{state.get('progress', 0)}%", str(state.get("step") or "")]
    if state.get("message"):
        parts.append(f"({state['message']})")
    return " ".join(part for part in parts if part)


def cmd_admin_token(args: argparse.Namespace) -> int:
    from relay.cli_text import admin_token_text

    config = load_or_embedded(args.config)
    print(admin_token_text(config, ensure_token(config)), end="")
    return 0
