"""The configuration's semantic checks: what each value may be, and which values must agree
(ports, address families, sizes, intervals). `check()` raises a ConfigError naming the key.
"""

from __future__ import annotations

import ipaddress
import re
import shlex

from relay.config_sections import (
    MIN_UPDATE_INTERVAL,
    NODE_NAME_RE,
    SHADOWSOCKS_CIPHERS,
    STORE_BACKENDS,
    TLS_MODES,
    Config,
    ConfigError,
    Iroh,
    Store,
    Turn,
    Update,
    WebIMAP,
)


def check(config: Config) -> None:
    listen = config.listen
    for name, port in listen.services().items():
        if not 0 < port < 65536:
            raise ConfigError(f"listen.{name}: port must be 0 (off) or 1..65535, got {port}")
    seen: dict[int, str] = {}
    for name, port in listen.services().items():
        if port in seen:
            raise ConfigError(f"listen.{name}: port {port} is already used by listen.{seen[port]}")
        seen[port] = name
    for addr in listen.address:
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise ConfigError(f"listen.address: not an IP address: {addr!r}") from None
    for network in listen.proxy_from:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                f"listen.proxy_from: not an IP address or network: {network!r}"
            ) from None
    if listen.proxy_protocol and not listen.proxy_from:
        raise ConfigError(
            "listen.proxy_from: needs the load balancer's addresses when listen.proxy_protocol"
            " is on (a PROXY header is believed from them only)"
        )
    if config.tls.mode not in TLS_MODES:
        raise ConfigError(
            f"tls.mode: must be one of {', '.join(TLS_MODES)}, got {config.tls.mode!r}"
        )
    if config.tls.mode == "files" and not (config.tls.cert and config.tls.key):
        raise ConfigError('tls.cert: mode = "files" needs both tls.cert and tls.key')
    if config.tls.mode == "acme" and config.is_lan:
        raise ConfigError("tls.mode: acme needs a DNS name as mail_domain, not an IP address")
    if config.tls.mode == "acme" and not config.listen.http:
        raise ConfigError(
            "listen.http: acme mode answers http-01 challenges, so it needs port 80 on"
        )
    acc = config.accounts
    if acc.username_min_length < 1:
        raise ConfigError("accounts.username_min_length: must be at least 1")
    if acc.username_max_length < acc.username_min_length:
        raise ConfigError(
            "accounts.username_max_length: must be >= accounts.username_min_length "
            f"({acc.username_max_length} < {acc.username_min_length})"
        )
    if acc.password_min_length < 8:
        raise ConfigError("accounts.password_min_length: must be at least 8")
    lim = config.limits
    if lim.max_message_size < 1024:
        raise ConfigError(f"limits.max_message_size: too small ({lim.max_message_size} bytes)")
    if lim.max_mailbox_size < lim.max_message_size:
        raise ConfigError("limits.max_mailbox_size: must be at least limits.max_message_size")
    if lim.max_message_bytes_in_flight < lim.max_message_size:
        raise ConfigError(
            "limits.max_message_bytes_in_flight: must be at least limits.max_message_size"
        )
    if lim.max_user_send_per_minute < 1:
        raise ConfigError("limits.max_user_send_per_minute: must be at least 1")
    if lim.max_user_send_burst_size < 1:
        raise ConfigError("limits.max_user_send_burst_size: must be at least 1")
    if lim.max_recipients < 1:
        raise ConfigError("limits.max_recipients: must be at least 1")
    push = config.push
    if push.url and not (push.url.startswith("https://") and len(push.url) > len("https://")):
        raise ConfigError(f"push.url: must be an https:// URL or empty, got {push.url!r}")
    fed = config.federation
    if fed.policy not in ("ACCEPT", "REJECT"):
        raise ConfigError(f"federation.policy: must be ACCEPT or REJECT, got {fed.policy!r}")
    for name in ("peer_smtp_port", "peer_https_port"):
        if not 0 < getattr(fed, name) < 65536:
            raise ConfigError(f"federation.{name}: must be a port 1..65535")
    if not 0 < fed.retry_initial <= fed.retry_max:
        raise ConfigError("federation.retry_initial: must be positive and <= federation.retry_max")
    if fed.queue_lifetime < fed.retry_initial:
        raise ConfigError("federation.queue_lifetime: must be at least federation.retry_initial")
    _check_turn(config.turn)
    _check_iroh(config.iroh)
    _check_shadowsocks(config)
    _check_webimap(config.webimap)
    _check_store(config.store)
    _check_update(config.update)
    ret = config.retention
    for name in ("delete_mails_after", "delete_large_after", "delete_inactive_users_after"):
        if getattr(ret, name) < 1:
            raise ConfigError(f"retention.{name}: must be at least 1 day")
    if ret.delete_large_after > ret.delete_mails_after:
        raise ConfigError(
            "retention.delete_large_after: must not exceed retention.delete_mails_after"
        )


ORIGIN_RE = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s]+")  # scheme://host[:port], nothing after


def _check_webimap(web: WebIMAP) -> None:
    for origin in web.cors_origins:
        if origin != "*" and not ORIGIN_RE.fullmatch(origin):
            raise ConfigError(
                f"webimap.cors_origins: not an origin like https://mail.example.org or *: {origin!r}"
            )
    for name in ("ping_interval", "send_timeout", "send_queue"):
        if getattr(web, name) < 1:
            raise ConfigError(f"webimap.{name}: must be at least 1")
    if web.idle_timeout <= web.ping_interval:
        raise ConfigError(
            "webimap.idle_timeout: must be longer than webimap.ping_interval "
            f"({web.idle_timeout} <= {web.ping_interval})"
        )


def _check_store(store: Store) -> None:
    if store.backend not in STORE_BACKENDS:
        raise ConfigError(
            f"store.backend: must be one of {', '.join(STORE_BACKENDS)}, got {store.backend!r}"
        )
    if store.backend == "postgresql" and not store.dsn.strip():
        raise ConfigError('store.dsn: backend = "postgresql" needs a connection string')
    if not 1 <= store.pool_size <= 1000:
        raise ConfigError(f"store.pool_size: must be 1..1000, got {store.pool_size}")
    if store.statement_timeout < 1:
        raise ConfigError("store.statement_timeout: must be at least 1 second")
    if store.node_name and not NODE_NAME_RE.fullmatch(store.node_name):
        raise ConfigError(
            f"store.node_name: letters, digits, '.', '_' and '-' only, got {store.node_name!r}"
        )


def _check_update(update: Update) -> None:
    if update.url and not (update.url.startswith("https://") and len(update.url) > 8):
        raise ConfigError(f"update.url: must be an https:// URL or empty, got {update.url!r}")
    if update.check_interval < MIN_UPDATE_INTERVAL:
        raise ConfigError(
            f"update.check_interval: must be at least {MIN_UPDATE_INTERVAL} seconds,"
            f" got {update.check_interval}"
        )
    if update.max_bundle_size < 1 << 20:
        raise ConfigError("update.max_bundle_size: must be at least 1M")
    try:
        reboot = shlex.split(update.reboot_command)
    except ValueError as e:
        raise ConfigError(f"update.reboot_command: not a command line: {e}") from None
    if not reboot:
        raise ConfigError("update.reboot_command: must not be empty")
    if not update.rauc.strip():
        raise ConfigError("update.rauc: must not be empty")


def _check_iroh(iroh: Iroh) -> None:
    if not 0 <= iroh.port < 65536:
        raise ConfigError(f"iroh.port: must be 0 (none) or 1..65535, got {iroh.port}")
    for name in ("max_connections_per_ip", "bytes_per_second", "frames_per_second"):
        if getattr(iroh, name) < 1:
            raise ConfigError(f"iroh.{name}: must be at least 1")
    if iroh.idle_timeout < 20:
        raise ConfigError("iroh.idle_timeout: must be at least 20 seconds (pings come every 15)")


def _check_shadowsocks(config: Config) -> None:
    ss = config.shadowsocks
    if not 0 <= ss.port < 65536:
        raise ConfigError(f"shadowsocks.port: must be 0 (off) or 1..65535, got {ss.port}")
    if ss.port:
        taken = {port: f"listen.{name}" for name, port in config.listen.services().items()}
        if config.iroh.enabled and config.iroh.port:
            taken.setdefault(config.iroh.port, "iroh.port")
        if ss.port in taken:
            raise ConfigError(
                f"shadowsocks.port: port {ss.port} is already used by {taken[ss.port]}"
            )
    if ss.cipher not in SHADOWSOCKS_CIPHERS:
        raise ConfigError(
            f"shadowsocks.cipher: must be one of {', '.join(SHADOWSOCKS_CIPHERS)}, got {ss.cipher!r}"
        )
    if any(c in ss.password for c in "\r\n"):
        raise ConfigError("shadowsocks.password: must be one line")
    if ss.probe_timeout < 1:
        raise ConfigError("shadowsocks.probe_timeout: must be at least 1 second")


def _check_turn(turn: Turn) -> None:
    if not 0 <= turn.port < 65536:
        raise ConfigError(f"turn.port: must be 0 (off) or 1..65535, got {turn.port}")
    m = re.fullmatch(r"([0-9]{1,5})-([0-9]{1,5})", turn.relay_ports)
    if not m or not 1024 <= int(m.group(1)) <= int(m.group(2)) <= 65535:
        raise ConfigError(
            f"turn.relay_ports: must be a range like 49152-65535 within 1024..65535, "
            f"got {turn.relay_ports!r}"
        )
    if turn.external:
        host, _, port = turn.external.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        if not host or (":" in host and not bracketed) or not port.isdigit():
            raise ConfigError(f"turn.external: must be host:port, got {turn.external!r}")
        if not 0 < int(port) < 65536:
            raise ConfigError(f"turn.external: port must be 1..65535, got {port}")
    if turn.relay_address:
        try:
            ipaddress.ip_address(turn.relay_address)
        except ValueError:
            raise ConfigError(
                f"turn.relay_address: not an IP address: {turn.relay_address!r}"
            ) from None
    if turn.allocations_per_user < 1 or turn.allocations_per_ip < 1:
        raise ConfigError("turn.allocations_per_user: and allocations_per_ip must be at least 1")
    if turn.max_lifetime < 600:
        raise ConfigError("turn.max_lifetime: must be at least 600 seconds (RFC 8656)")
    if turn.bytes_per_second < 10_000:
        raise ConfigError("turn.bytes_per_second: must be at least 10000")
