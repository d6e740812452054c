"""TLS for every listener: self-signed certificates, PEM files, and live certificate swaps.

One `TLSManager` holds the current server `ssl.SSLContext`. Listeners read `manager.context`
for each new connection, so `reload()` or `install()` changes what new connections get while
established ones keep their session.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relay.config import Config
from relay.durable import write_atomically

# TLS 1.2 only with forward-secret AEAD suites; TLS 1.3 suites are all modern and preferred.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TLSError(Exception):
    pass


def make_self_signed(domain: str, *, days: int = 36500) -> tuple[bytes, bytes]:
    """A P-256 certificate for `domain` (a DNS name or an IP address) and its key, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(domain))]
    except ValueError:
        names = [x509.DNSName(d) for d in (domain, f"www.{domain}", f"mta-sts.{domain}")]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_pair(cert_path: Path, key_path: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Write a certificate and key atomically (key readable by the owner only)."""
    write_atomically(key_path, key_pem, mode=0o600)
    write_atomically(cert_path, cert_pem, mode=0o644)


def ensure_certificate(config: Config) -> None:
    """Create a self-signed certificate once; in acme mode it serves until the CA's arrives."""
    if config.tls.mode == "files":
        return
    if config.cert_path.exists() and config.key_path.exists() and names_domain(config):
        return
    # None yet, or one for another domain (a LAN box that got a new address): make a new one.
    write_pair(config.cert_path, config.key_path, *make_self_signed(config.mail_domain))


def names_domain(config: Config) -> bool:
    """Whether the certificate on disk is for config.mail_domain (an ACME one always is)."""
    if config.tls.mode == "acme":
        return True
    try:
        cert = x509.load_pem_x509_certificate(config.cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    try:
        wanted: object = ipaddress.ip_address(config.mail_domain)
        return wanted in names.get_values_for_type(x509.IPAddress)
    except ValueError:
        return config.mail_domain in names.get_values_for_type(x509.DNSName)


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as e:
        raise TLSError(f"cannot load certificate {cert_path} / key {key_path}: {e}") from None
    return ctx


class TLSManager:
    def __init__(self, config: Config):
        self.config = config
        ensure_certificate(config)
        self.context = server_context(config.cert_path, config.key_path)

    def reload(self, config: Config) -> None:
        """Re-read certificate files (after SIGHUP); keeps the old context on error."""
        ensure_certificate(config)
        self.context = server_context(config.cert_path, config.key_path)
        self.config = config

    def install(self, cert_pem: bytes, key_pem: bytes) -> None:
        """Store a new certificate (e.g. from ACME) and use it for new connections."""
        write_pair(self.config.cert_path, self.config.key_path, cert_pem, key_pem)
        self.context = server_context(self.config.cert_path, self.config.key_path)

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.config.cert_path.read_bytes())


def acme_state_dir(config: Config) -> Path:
    """Where the ACME account key and its URI live (relay/web/acme.py keeps them)."""
    return config.data_dir / "acme"


def acme_account_uri(config: Config) -> str | None:
    """The ACME account's URI once registered (for the CAA record), else None."""
    try:
        return json.loads((acme_state_dir(config) / "account.json").read_text())["uri"]
    except (OSError, ValueError, KeyError):
        return None
