"""The relay's one configuration file: TOML, validated completely at start.

Every key has the official chatmail relay's default (chatmail.ini). A problem is reported as a
`ConfigError` naming the key, so `relay serve` can stop with exit code 2 and a useful message.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

SIZE_RE = re.compile(r"\s*([0-9]{1,19})\s*([KMGT]?)B?\s*", re.IGNORECASE)  # used with fullmatch
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
HOSTNAME_LABEL_RE = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")  # used with fullmatch
TLS_MODES = ("self-signed", "files", "acme")
SIZE_KEY_SUFFIXES = ("_size", "_space", "_bytes_in_flight")  # these may be given as "500M"
STORE_BACKENDS = ("embedded", "postgresql")
NODE_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,63}")  # used with fullmatch
SHADOWSOCKS_CIPHERS = ("chacha20-ietf-poly1305", "aes-256-gcm", "aes-128-gcm")
MIN_UPDATE_INTERVAL = 3600  # an update server is asked at most hourly


class ConfigError(Exception):
    """A configuration problem; the message names the key."""


@dataclass(frozen=True)
class Listen:
    address: list[str] = field(default_factory=lambda: ["0.0.0.0"])
    smtp: int = 25
    submissions: int = 465
    submission: int = 587
    imaps: int = 993
    imap: int = 143
    https: int = 443
    http: int = 80
    # behind a TCP load balancer: connections from `proxy_from` (addresses or networks) start
    # with a PROXY protocol v1/v2 header naming the client; others are served as they come
    proxy_protocol: bool = False
    proxy_from: list[str] = field(default_factory=list)

    def services(self) -> dict[str, int]:
        """Listener name -> port, for the enabled listeners only."""
        ports = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.type == "int"}
        return {name: port for name, port in ports.items() if port}


@dataclass(frozen=True)
class TLS:
    mode: str = "self-signed"
    cert: str = ""
    key: str = ""
    acme_directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    acme_email: str = ""
    acme_ca_file: str = ""  # extra trust for a private ACME CA (tests, internal PKI)


@dataclass(frozen=True)
class Accounts:
    jit: bool = True
    registration_open: bool = True
    username_min_length: int = 9
    username_max_length: int = 9
    password_min_length: int = 9
    min_free_disk_space: int = 64 << 20  # kept free: below it no new mail or accounts (452 4.3.1)


@dataclass(frozen=True)
class Limits:
    max_message_size: int = 31457280
    max_user_send_per_minute: int = 60
    max_user_send_burst_size: int = 10
    max_mailbox_size: int = 500 << 20
    max_recipients: int = 1000  # also served as METADATA maxsmtprecipients
    max_message_bytes_in_flight: int = 256 << 20  # bodies buffered at once, all connections
    max_connections_per_ip: int = 200
    max_connections_per_account: int = 20  # IMAP: a handful of devices plus their probes
    new_account_per_minute: int = 120  # /new per client IP, as the anchor's nginx: 2 r/s
    new_account_burst: int = 5


@dataclass(frozen=True)
class Retention:
    delete_mails_after: int = 20
    delete_large_after: int = 7
    delete_inactive_users_after: int = 90


@dataclass(frozen=True)
class Privacy:
    no_log: bool = False
    privacy_mail: str = ""


@dataclass(frozen=True)
class Federation:
    enabled: bool = True  # false: no mail to or from other relays at all
    dkim_selector: str = "opendkim"  # the official relay's selector, so existing DNS records fit
    # "ACCEPT": federate with everyone except `policy_domains` (a block list);
    # "REJECT": federate with nobody except `policy_domains` (an allow list). Both directions.
    policy: str = "ACCEPT"
    policy_domains: list[str] = field(default_factory=list)
    queue_lifetime: int = 2 * 24 * 3600  # seconds until a message is bounced (Postfix's 2d)
    retry_initial: int = 60  # seconds before the first retry; doubles up to retry_max
    retry_max: int = 1800
    # "ip", "ip:port" or "[ipv6]:port" of the DNS server to ask; "" = /etc/resolv.conf
    resolver: str = ""
    peer_smtp_port: int = 25  # where peers listen; only tests and odd networks change these
    peer_https_port: int = 443
    ca_file: str = ""  # extra CA certificates trusted for peers (besides the system store)


@dataclass(frozen=True)
class Push:
    """Push notifications through the Delta Chat notification proxy; url "" turns push off
    (then the relay does not say it supports push, and the apps poll instead)."""

    url: str = "https://notifications.delta.chat/notify"
    ca_file: str = ""  # extra CA certificates trusted for the proxy (tests, a private proxy)


@dataclass(frozen=True)
class Metadata:
    """Server METADATA values for Delta Chat; empty means NIL (the service is not offered)."""

    comment: str = ""
    irohrelay: str = ""  # URL of an iroh relay for realtime apps
    turn: str = ""  # explicit override: host:port:user:password served as it is ([turn] mints)
    appversions: str = ""  # single-line JSON of current app versions


@dataclass(frozen=True)
class Turn:
    """The built-in TURN server for calls (relay/turn), or credentials for an external one."""

    enabled: bool = True  # false: no TURN credentials are handed out, no built-in server
    port: int = 3478  # UDP; 0 turns the built-in server off
    relay_ports: str = "49152-65535"  # UDP ports the relay sockets of allocations come from
    secret: str = ""  # "" = generated once into the data dir (turn-secret, mode 0600)
    external: str = ""  # "host:port" of a TURN server sharing the secret: only mint for it
    relay_address: str = ""  # the address announced for relayed traffic; "" = automatic
    allow_loopback_peers: bool = False  # tests on one machine only
    allow_private_peers: bool = False  # domain mode: relay to private ranges too (LAN: always)
    allocations_per_user: int = 10
    allocations_per_ip: int = 20
    max_lifetime: int = 3600  # seconds an allocation lives without a refresh, at most
    bytes_per_second: int = 1_250_000  # per allocation, both directions (10 Mbit/s)

    def relay_port_range(self) -> tuple[int, int]:
        low, _, high = self.relay_ports.partition("-")
        return int(low), int(high or low)


@dataclass(frozen=True)
class Iroh:
    """The built-in iroh relay for realtime webxdc apps (relay/iroh, docs/iroh.md)."""

    enabled: bool = True
    port: int = 3340  # the plain-HTTP listener where the certificate is self-signed; 0 = none
    max_connections_per_ip: int = 50
    bytes_per_second: int = 2_000_000  # what one client may send (read slower beyond)
    frames_per_second: int = 2000
    idle_timeout: int = 60  # seconds without a frame from the client (it gets a Ping per 15 s)


@dataclass(frozen=True)
class Shadowsocks:
    """A Shadowsocks (AEAD) port into the relay's own services only (relay/shadowsocks,
    docs/shadowsocks.md), for networks that block the mail ports."""

    enabled: bool = True  # the admin switch; the port must be set too
    port: int = 0  # TCP; 0 = off (443 or 8388 are good choices)
    password: str = ""  # "" = generated once into the data dir (shadowsocks-password, 0600)
    cipher: str = "chacha20-ietf-poly1305"  # or aes-256-gcm, aes-128-gcm
    probe_timeout: int = 60  # seconds a connection that fails or stays silent is held, mute


@dataclass(frozen=True)
class WebIMAP:
    """Mail for web and desktop clients over REST and WebSocket (relay/webimap, docs/webimap.md).

    Off by default, as in madmail: every /webimap/ and /websmtp/ route then answers 404."""

    enabled: bool = False
    send: bool = False  # the send endpoints and the WebSocket "send" action (madmail's WebSMTP)
    cors_origins: list[str] = field(default_factory=list)  # [] = no CORS headers; "*" = anyone
    ping_interval: int = 30  # seconds between WebSocket pings
    idle_timeout: int = 60  # seconds without any frame from the client before it is closed
    send_timeout: int = 10  # seconds a write may wait for a client that does not read
    send_queue: int = 256  # frames queued for one WebSocket at most


@dataclass(frozen=True)
class Store:
    """Where mail lives: the embedded store in data_dir, or a PostgreSQL database that several
    relay nodes share (relay/store/postgres, `relay db upgrade` creates its tables)."""

    backend: str = "embedded"  # or "postgresql"
    dsn: str = ""  # libpq connection string or URI; required with backend = "postgresql"
    pool_size: int = 8  # database connections (and threads running queries) at most
    node_name: str = ""  # this node among those sharing the database; "" = the hostname
    statement_timeout: int = 30  # seconds a query may run before the database cancels it


@dataclass(frozen=True)
class Update:
    """Signed RAUC update bundles (relay/core/update, docs/updates.md); url "" = no polling."""

    url: str = ""  # https:// URL of the update manifest (JSON), checked every check_interval
    check_interval: int = 86400  # seconds between checks of url, at least MIN_UPDATE_INTERVAL
    max_bundle_size: int = 1 << 30  # a bigger download or copy is refused
    ca_file: str = ""  # extra CA certificates trusted for url (tests, a private server)
    reboot_command: str = "systemctl reboot"  # run after an install; the image may use tryboot
    rauc: str = "rauc"  # the rauc binary


@dataclass(frozen=True)
class Config:
    mail_domain: str
    data_dir: Path
    listen: Listen = field(default_factory=Listen)
    tls: TLS = field(default_factory=TLS)
    accounts: Accounts = field(default_factory=Accounts)
    limits: Limits = field(default_factory=Limits)
    retention: Retention = field(default_factory=Retention)
    privacy: Privacy = field(default_factory=Privacy)
    metadata: Metadata = field(default_factory=Metadata)
    federation: Federation = field(default_factory=Federation)
    push: Push = field(default_factory=Push)
    turn: Turn = field(default_factory=Turn)
    iroh: Iroh = field(default_factory=Iroh)
    shadowsocks: Shadowsocks = field(default_factory=Shadowsocks)
    webimap: WebIMAP = field(default_factory=WebIMAP)
    store: Store = field(default_factory=Store)
    update: Update = field(default_factory=Update)
    source: Path | None = None  # the file this was read from, for reloads

    # Cached: a Config never changes (a reload makes a new one), and every recipient of every
    # message asks is_local_address.
    @cached_property
    def is_lan(self) -> bool:
        """LAN mode: the domain is an IP address and addresses look like user@[10.0.0.2], or
        user@[IPv6:fd00::2] for an IPv6 one."""
        return is_ip_address(self.mail_domain)

    @cached_property
    def address_domain(self) -> str:
        """The domain part of the relay's addresses: an address literal in LAN mode (RFC 5321
        section 4.1.3, where an IPv6 address is tagged "IPv6:")."""
        if not self.is_lan:
            return self.mail_domain
        if ipaddress.ip_address(self.mail_domain).version == 6:
            return f"[IPv6:{self.mail_domain}]"
        return f"[{self.mail_domain}]"

    @cached_property
    def url_host(self) -> str:
        """mail_domain as the host of a URL, where an IPv6 address is bracketed (RFC 3986)."""
        if self.is_lan and ipaddress.ip_address(self.mail_domain).version == 6:
            return f"[{self.mail_domain}]"
        return self.mail_domain

    @cached_property
    def _local_domain(self) -> str:
        return self.address_domain.lower()

    @property
    def cert_path(self) -> Path:
        return (
            Path(self.tls.cert) if self.tls.mode == "files" else self.data_dir / "tls" / "cert.pem"
        )

    @property
    def key_path(self) -> Path:
        return Path(self.tls.key) if self.tls.mode == "files" else self.data_dir / "tls" / "key.pem"

    def is_local_address(self, addr: str) -> bool:
        return addr.rpartition("@")[2].lower() == self._local_domain

    @classmethod
    def embedded_default(cls, data_dir: Path, *, address: str = "127.0.0.1") -> Config:
        """LAN mode on loopback with unprivileged ports: what `relay serve` runs in a checkout."""
        ports = Listen(
            address=[address],
            smtp=2525,
            submissions=4650,
            submission=5870,
            imaps=9930,
            imap=1430,
            https=8443,
            http=8080,
        )
        return cls(mail_domain=address, data_dir=Path(data_dir), listen=ports)


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
    _check_semantics(config)
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


def _check_semantics(config: Config) -> None:
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


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address (no brackets, no zone: a mail domain names no interface)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return "%" not in text


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"
