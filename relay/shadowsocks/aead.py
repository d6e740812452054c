"""The Shadowsocks AEAD stream format (SIP004), sans-IO: bytes in, plaintext out; no sockets.

Each direction of a connection starts with a random salt as long as the key. The session key is
HKDF-SHA1(master key, salt, info "ss-subkey"); the master key comes from the password through
OpenSSL's EVP_BytesToKey (an MD5 chain), as every Shadowsocks implementation derives it. Then
come chunks: [length: u16 BE, at most 0x3FFF] + tag, [payload] + tag, each sealed with a 12-byte
little-endian nonce counted up by one per seal or open. The client's first payload starts with
the destination as a SOCKS5 address (ATYP 1 IPv4, 3 name, 4 IPv6, then a u16 port).

`Decoder` holds at most one incomplete chunk between calls: what the caller fed beyond it is
decoded at once. Any authentication failure raises `DecryptError` and the decoder is dead.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TAG_SIZE = 16
NONCE_SIZE = 12
MAX_PAYLOAD = 0x3FFF
LENGTH_CHUNK = 2 + TAG_SIZE
SUBKEY_INFO = b"ss-subkey"
MAX_ADDRESS = 1 + 1 + 255 + 2  # the longest SOCKS address: a 255-byte name


@dataclass(frozen=True)
class Cipher:
    name: str
    key_size: int  # also the salt size
    aead: type[AESGCM] | type[ChaCha20Poly1305]


CIPHERS = {
    c.name: c
    for c in (
        Cipher("chacha20-ietf-poly1305", 32, ChaCha20Poly1305),
        Cipher("aes-256-gcm", 32, AESGCM),
        Cipher("aes-128-gcm", 16, AESGCM),
    )
}


class DecryptError(Exception):
    """A tag did not verify or a length was out of range: not our client, or tampered with."""


class AddressError(Exception):
    """The first payload does not start with a SOCKS5 address."""


@lru_cache(maxsize=16)
def master_key(password: str, key_size: int) -> bytes:
    """OpenSSL's EVP_BytesToKey with MD5, one round and no salt: D_i = MD5(D_{i-1} + password)."""
    secret = password.encode()
    key = b""
    block = b""
    while len(key) < key_size:
        block = hashlib.md5(block + secret).digest()
        key += block
    return key[:key_size]


def session_key(master: bytes, salt: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA1(), length=len(master), salt=salt, info=SUBKEY_INFO)
    return hkdf.derive(master)


class _Sealer:
    """One direction's AEAD with its nonce counter."""

    def __init__(self, cipher: Cipher, master: bytes, salt: bytes) -> None:
        self.aead = cipher.aead(session_key(master, salt))
        self.counter = 0

    def _nonce(self) -> bytes:
        nonce = self.counter.to_bytes(NONCE_SIZE, "little")
        self.counter += 1
        return nonce

    def seal(self, data: bytes) -> bytes:
        return self.aead.encrypt(self._nonce(), data, None)

    def open(self, data: bytes) -> bytes:
        try:
            return self.aead.decrypt(self._nonce(), data, None)
        except InvalidTag:
            raise DecryptError("tag mismatch") from None


class Encoder:
    """Plaintext → the salt (before the first chunk) and sealed chunks."""

    def __init__(self, cipher: Cipher, master: bytes, salt: bytes | None = None) -> None:
        self.salt = salt if salt is not None else os.urandom(cipher.key_size)
        if len(self.salt) != cipher.key_size:
            raise ValueError("salt must be as long as the key")
        self._sealer = _Sealer(cipher, master, self.salt)
        self._salt_sent = False

    def encode(self, data: bytes) -> bytes:
        if not data:
            return b""
        out = bytearray()
        if not self._salt_sent:
            out += self.salt
            self._salt_sent = True
        view = memoryview(data)
        for start in range(0, len(data), MAX_PAYLOAD):
            piece = bytes(view[start : start + MAX_PAYLOAD])
            out += self._sealer.seal(len(piece).to_bytes(2, "big"))
            out += self._sealer.seal(piece)
        return bytes(out)


class Decoder:
    """The salt and sealed chunks → plaintext. `chunks` counts the payloads opened so far."""

    def __init__(self, cipher: Cipher, master: bytes) -> None:
        self.cipher = cipher
        self.master = master
        self.salt: bytes | None = None
        self.chunks = 0
        self._opener: _Sealer | None = None
        self._buffer = bytearray()
        self._length: int | None = None  # of the payload whose length chunk is open
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes received and not decoded yet (less than one chunk after `decode`)."""
        return len(self._buffer)

    def decode(self, data: bytes | bytearray) -> bytes:
        if self._failed:
            raise DecryptError("the stream already failed")
        self._buffer += data
        buffer = self._buffer
        pos = 0
        if self._opener is None:
            size = self.cipher.key_size
            if len(buffer) < size:
                return b""
            self.salt = bytes(buffer[:size])
            self._opener = _Sealer(self.cipher, self.master, self.salt)
            pos = size
        out = bytearray()
        try:
            while True:
                if self._length is None:
                    if len(buffer) - pos < LENGTH_CHUNK:
                        break
                    raw = self._opener.open(bytes(buffer[pos : pos + LENGTH_CHUNK]))
                    pos += LENGTH_CHUNK
                    length = int.from_bytes(raw, "big")
                    if length > MAX_PAYLOAD:
                        raise DecryptError(f"chunk length {length} over {MAX_PAYLOAD}")
                    self._length = length
                end = pos + self._length + TAG_SIZE
                if len(buffer) < end:
                    break
                out += self._opener.open(bytes(buffer[pos:end]))
                pos = end
                self._length = None
                self.chunks += 1
        except DecryptError:
            self._failed = True
            self._buffer = bytearray()
            raise
        del buffer[:pos]
        return bytes(out)


def parse_address(data: bytes) -> tuple[str, int, int] | None:
    """(host, port, bytes used) from the start of the first payload; None if incomplete."""
    if not data:
        return None
    kind = data[0]
    if kind == 1:
        end = 1 + 4
        host = str(ipaddress.IPv4Address(data[1:end])) if len(data) >= end else ""
    elif kind == 4:
        end = 1 + 16
        host = str(ipaddress.IPv6Address(data[1:end])) if len(data) >= end else ""
    elif kind == 3:
        if len(data) < 2:
            return None
        end = 2 + data[1]
        name = data[2:end]
        try:
            host = name.decode("ascii") if len(data) >= end else ""
        except UnicodeDecodeError:
            raise AddressError("a host name that is not ASCII") from None
        if len(data) >= end and not host:
            raise AddressError("an empty host name")
    else:
        raise AddressError(f"unknown address type {kind}")
    if len(data) < end + 2:
        return None
    return host, int.from_bytes(data[end : end + 2], "big"), end + 2


def encode_address(host: str, port: int) -> bytes:
    """A SOCKS5 address as a client puts it before its first payload (tests, benchmarks)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("ascii")
        return bytes([3, len(name)]) + name + port.to_bytes(2, "big")
    kind = 1 if ip.version == 4 else 4
    return bytes([kind]) + ip.packed + port.to_bytes(2, "big")
