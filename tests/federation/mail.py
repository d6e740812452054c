"""Messages for federation tests: real PGP/MIME (encrypted with PGPy) and plain ones."""

from __future__ import annotations

import secrets
import warnings
from email.utils import formatdate
from functools import lru_cache

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # PGPy names ciphers cryptography moved
    import pgpy
    from pgpy.constants import (
        CompressionAlgorithm,
        HashAlgorithm,
        KeyFlags,
        PubKeyAlgorithm,
        SymmetricKeyAlgorithm,
    )


@lru_cache(maxsize=1)
def recipient_key() -> pgpy.PGPKey:
    key = pgpy.PGPKey.new(PubKeyAlgorithm.RSAEncryptOrSign, 2048)
    uid = pgpy.PGPUID.new("federation test")
    key.add_uid(
        uid,
        usage={KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage, KeyFlags.Sign},
        hashes=[HashAlgorithm.SHA256],
        ciphers=[SymmetricKeyAlgorithm.AES256],
        compression=[CompressionAlgorithm.Uncompressed],
    )
    return key


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def armored_ciphertext(text: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        message = pgpy.PGPMessage.new(text, compression=CompressionAlgorithm.Uncompressed)
        encrypted = recipient_key().pubkey.encrypt(message)
    return str(encrypted).replace("\r\n", "\n")


def headers(sender: str, recipients: list[str], extra: str = "") -> str:
    return (
        f"From: <{sender}>\n"
        f"To: {', '.join(f'<{r}>' for r in recipients)}\n"
        "Subject: [...]\n"
        f"Date: {formatdate()}\n"
        f"Message-ID: <{secrets.token_hex(8)}@test>\n"
        "MIME-Version: 1.0\n"
        f"{extra}"
    )


def encrypted(sender: str, recipients: list[str], text: str = "hello") -> bytes:
    """A Delta Chat-shaped PGP/MIME message (RFC 3156) with a real OpenPGP payload."""
    boundary = secrets.token_hex(8)
    body = (
        f'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="{boundary}"\n'
        "\n"
        f"--{boundary}\n"
        "Content-Type: application/pgp-encrypted\n"
        "Content-Description: PGP/MIME version identification\n"
        "\n"
        "Version: 1\n"
        "\n"
        f"--{boundary}\n"
        'Content-Type: application/octet-stream; name="encrypted.asc"\n'
        "Content-Description: OpenPGP encrypted message\n"
        'Content-Disposition: inline; filename="encrypted.asc"\n'
        "\n"
        f"{armored_ciphertext(text)}\n"
        f"--{boundary}--\n"
    )
    return crlf(headers(sender, recipients) + body)


def plain(sender: str, recipients: list[str], text: str = "hello") -> bytes:
    return crlf(headers(sender, recipients, "Content-Type: text/plain\n") + "\n" + text + "\n")
