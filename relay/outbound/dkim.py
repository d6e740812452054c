"""DKIM for our own mail: the key made at `relay init`, its DNS record, and signing.

Every message leaving for another relay is signed when its From domain is ours, because the
official relay refuses unsigned mail from DNS-name senders (madmail issue #146). Relays in LAN
mode have no DNS to publish a key in, so they neither make a key nor sign, as the official
relay's IP-only mode.
"""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import dkim as dkimpy
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from relay.addresses import from_domain
from relay.durable import write_atomically

KEY_BITS = 2048
TTL = 3600
TXT_CHUNK = 255  # the longest character-string a TXT record can hold
# Signed one extra time so nobody can add a second copy of them after signing (as the
# official relay's OpenDKIM OversignHeaders).
OVERSIGN = (
    b"from",
    b"reply-to",
    b"subject",
    b"date",
    b"to",
    b"cc",
    b"in-reply-to",
    b"references",
    b"autocrypt",
)
CANONICALIZE = (b"relaxed", b"relaxed")


def key_path(config: Any) -> Path:
    return Path(config.data_dir) / "dkim" / f"{config.federation.dkim_selector}.private"


def ensure_key(config: Any) -> None:
    """Create the signing key once (RSA 2048, PKCS#1 PEM, owner-only) unless in LAN mode.

    Callers in several threads (the queue worker at start, `relay dns` text for the admin API)
    make one key between them: two would leave DNS naming a key that signs nothing."""
    path = key_path(config)
    with _making_key:
        if config.is_lan or path.exists():
            return
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        write_atomically(path, pem)


_making_key = threading.Lock()


def record_value(config: Any) -> str:
    """The TXT value: the public key, for email only, no subdomains (`t=s`)."""
    key = serialization.load_pem_private_key(key_path(config).read_bytes(), password=None)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1;k=rsa;p={base64.b64encode(spki).decode()};s=email;t=s"


def dkim_dns_record(config: Any) -> str:
    """The zone-file line for `relay dns` ("" in LAN mode); makes the key if it is missing."""
    if config.is_lan:
        return ""
    ensure_key(config)
    value = record_value(config)
    chunks = " ".join(f'"{value[i : i + TXT_CHUNK]}"' for i in range(0, len(value), TXT_CHUNK))
    name = f"{config.federation.dkim_selector}._domainkey.{config.mail_domain}."
    return f"{name} {TTL} IN TXT ( {chunks} )"


def signed_headers(message: bytes) -> list[bytes]:
    """Every header present except the ones RFC 6376 advises against, plus the oversigned."""
    signer = dkimpy.DKIM(message)
    present = [name.lower() for name, _ in signer.headers]
    names = [name for name in present if name not in signer.should_not_sign]
    extra = [n for n in present if n.startswith((b"resent-", b"list-"))]
    return names + list(dict.fromkeys([*OVERSIGN, *extra]))


def sign_now(config: Any, message: bytes) -> bytes:
    """`message` with a DKIM-Signature prepended, when its From domain is ours."""
    if config.is_lan or from_domain(message) != config.mail_domain.lower():
        return message
    ensure_key(config)
    header = dkimpy.sign(
        message,
        config.federation.dkim_selector.encode(),
        config.mail_domain.encode(),
        key_path(config).read_bytes(),
        canonicalize=CANONICALIZE,
        include_headers=signed_headers(message),
    )
    return header + message


async def sign(config: Any, message: bytes) -> bytes:
    """As sign_now, in a worker thread: hashing a large body would stall every connection."""
    return await trio.to_thread.run_sync(sign_now, config, message)
