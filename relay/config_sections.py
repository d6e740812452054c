"""What the configuration holds: one frozen dataclass per TOML section, with the official chatmail
relay's defaults (chatmail.ini), and `Config`, the whole file. Read it through relay.config (which
parses and checks the file and re-exports these names).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

TLS_MODES = ("self-signed", "files", "acme")
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


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address (no brackets, no zone: a mail domain names no interface)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return "%" not in text
