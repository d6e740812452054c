"""Argon2id as the relay stores it, against RFC 9106's test vector and the reference
implementation (Debian's argon2, the RFC authors' C code)."""

from __future__ import annotations

import subprocess

import pytest
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from relay.core import passwords
from tests.helpers import require_tool

# RFC 9106 §5.3: Argon2id, version 0x13, with a secret and associated data.
RFC9106_TAG = bytes.fromhex("0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659")
SALT = b"relay-test-salt1"  # printable: the reference tool takes its salt on the command line


def test_the_argon2id_the_relay_uses_gives_rfc_9106s_tag() -> None:
    kdf = Argon2id(
        salt=b"\x02" * 16,
        length=32,
        iterations=3,
        lanes=4,
        memory_cost=32,
        secret=b"\x03" * 8,
        ad=b"\x04" * 12,
    )
    assert kdf.derive(b"\x01" * 32) == RFC9106_TAG


def reference_hash(password: str) -> str:
    """The PHC string of the reference implementation, with the relay's parameters."""
    result = subprocess.run(
        [require_tool("argon2"), SALT.decode(), "-id", "-v", "13", "-e",
         "-t", str(passwords.ITERATIONS), "-k", str(passwords.MEMORY_KIB),
         "-p", str(passwords.LANES), "-l", str(passwords.HASH_BYTES)],
        input=password.encode(), capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return result.stdout.decode().strip()


@pytest.mark.parametrize("password", ["correct-horse-1", "pässwörd with spaces ✓"])
def test_the_relays_hash_is_the_reference_implementations(
    password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(passwords.os, "urandom", lambda n: SALT[:n])
    assert len(SALT) == passwords.SALT_BYTES
    reference = reference_hash(password)
    assert passwords.hash_password(password) == reference  # byte for byte, parameters too
    assert reference.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_a_reference_hash_verifies_and_a_wrong_password_does_not() -> None:
    stored = reference_hash("correct-horse-1")
    assert passwords.verify_password("correct-horse-1", stored)
    assert not passwords.verify_password("correct-horse-2", stored)
    assert not passwords.verify_password("correct-horse-1", stored.replace("argon2id", "argon2i"))
