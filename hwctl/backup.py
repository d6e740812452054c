"""Encrypted identity backups: the relay's config, keys, certificates, Shadowsocks password and
accounts, not mail.

The file is AES-256-GCM under a key derived with scrypt from a restore code. The code is made
once per box (kept in the data dir, so a factory reset also retires it) and shown on the display
after each backup; whoever holds the drive without the code learns nothing but the file's size.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import zlib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"RELAYID1"
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a small screen
CODE_GROUPS = 5  # 5 groups of 4 from 32 symbols: 100 bits
SCRYPT_N = 2**15  # ~0.1 s and 32 MiB on a Pi 4: slows guessing, fine for a one-off restore


class BackupError(Exception):
    pass


def backup_code(data_dir: Path) -> str:
    path = data_dir / "hwctl" / "backup-code"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    groups = ["".join(secrets.choice(CODE_ALPHABET) for _ in range(4)) for _ in range(CODE_GROUPS)]
    code = "-".join(groups)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(code + "\n")
    return code


def _key(code: str, salt: bytes) -> bytes:
    normalised = code.replace("-", "").replace(" ", "").upper().encode()
    return Scrypt(salt=salt, length=32, n=SCRYPT_N, r=8, p=1).derive(normalised)


def encrypt(identity: dict[str, Any], code: str) -> bytes:
    salt, nonce = os.urandom(16), os.urandom(12)
    plain = zlib.compress(json.dumps(identity).encode())
    return MAGIC + salt + nonce + AESGCM(_key(code, salt)).encrypt(nonce, plain, MAGIC)


def decrypt(blob: bytes, code: str) -> dict[str, Any]:
    if not blob.startswith(MAGIC):
        raise BackupError("not a relay identity backup")
    salt, nonce, sealed = blob[8:24], blob[24:36], blob[36:]
    try:
        plain = AESGCM(_key(code, salt)).decrypt(nonce, sealed, MAGIC)
    except Exception as e:  # InvalidTag: wrong code or a damaged file
        raise BackupError("wrong restore code, or the file is damaged") from e
    return json.loads(zlib.decompress(plain))


def write_file(directory: Path, blob: bytes) -> Path:
    """Write durably under a dated name; a half-written file never carries the final name."""
    name = time.strftime("relay-identity-%Y%m%d-%H%M%S.backup", time.gmtime())
    final = directory / name
    tmp = directory / (name + ".part")
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final
