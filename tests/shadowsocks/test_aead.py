"""The AEAD stream codec: the master key is OpenSSL's EVP_BytesToKey (checked against the
openssl command), chunks round-trip however the bytes are split, a changed byte or an
over-long chunk is an error, at most one chunk waits in the decoder, and salts are refused
while the bounded filter remembers them. Interoperation with another implementation is in
test_ss_local.py (shadowsocks-libev) and tests/e2e/test_shadowsocks.py (Delta Chat)."""

from __future__ import annotations

import re
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.shadowsocks.aead import (
    CIPHERS,
    MAX_PAYLOAD,
    TAG_SIZE,
    AddressError,
    Decoder,
    DecryptError,
    Encoder,
    _Sealer,
    encode_address,
    master_key,
    parse_address,
)
from relay.shadowsocks.replay import SaltFilter
from tests.helpers import require_tool

NAMES = sorted(CIPHERS)


@pytest.mark.parametrize("bits", [128, 256])
def test_master_key_is_openssls_evp_bytes_to_key(bits: int) -> None:
    openssl = require_tool("openssl")
    password = "correct horse battery"
    out = subprocess.run(
        [openssl, "enc", f"-aes-{bits}-cbc", "-k", password, "-nosalt", "-md", "md5", "-P"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    key = re.search(r"key=([0-9A-F]+)", out)
    assert key is not None, out
    assert master_key(password, bits // 8).hex().upper() == key.group(1)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    messages=st.lists(st.binary(max_size=40_000), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_round_trip_however_the_stream_is_cut(
    name: str, messages: list[bytes], cuts: list[int]
) -> None:
    cipher = CIPHERS[name]
    key = master_key("pw", cipher.key_size)
    encoder = Encoder(cipher, key)
    wire = b"".join(encoder.encode(m) for m in messages)
    decoder = Decoder(cipher, key)
    got = b""
    for piece in _split(wire, cuts):
        got += decoder.decode(piece)
        assert decoder.buffered <= MAX_PAYLOAD + 2 * TAG_SIZE + 2 + cipher.key_size
    assert got == b"".join(messages)
    assert decoder.buffered == 0
    assert decoder.salt == (encoder.salt if wire else None)  # nothing sent: not even the salt


@pytest.mark.parametrize("name", NAMES)
def test_any_changed_byte_fails_and_the_decoder_stays_failed(name: str) -> None:
    cipher = CIPHERS[name]
    key = master_key("pw", cipher.key_size)
    wire = Encoder(cipher, key).encode(b"a1 LOGIN x y\r\n")
    for i in range(cipher.key_size, len(wire), 7):
        tampered = bytearray(wire)
        tampered[i] ^= 0x01
        decoder = Decoder(cipher, key)
        with pytest.raises(DecryptError):
            decoder.decode(bytes(tampered))
        with pytest.raises(DecryptError):
            decoder.decode(b"")


def test_a_wrong_password_fails_at_the_first_length_chunk() -> None:
    cipher = CIPHERS["aes-256-gcm"]
    wire = Encoder(cipher, master_key("right", 32)).encode(b"hello")
    decoder = Decoder(cipher, master_key("wrong", 32))
    with pytest.raises(DecryptError):
        decoder.decode(wire[: 32 + 2 + TAG_SIZE])


def test_a_length_over_0x3fff_is_refused_before_its_payload() -> None:
    cipher = CIPHERS["chacha20-ietf-poly1305"]
    key = master_key("pw", 32)
    salt = bytes(32)
    sealer = _Sealer(cipher, key, salt)
    decoder = Decoder(cipher, key)
    with pytest.raises(DecryptError, match="length"):
        decoder.decode(salt + sealer.seal((MAX_PAYLOAD + 1).to_bytes(2, "big")))


def test_large_writes_become_chunks_of_at_most_0x3fff() -> None:
    cipher = CIPHERS["aes-128-gcm"]
    key = master_key("pw", 16)
    data = bytes(range(256)) * 200  # 51200 bytes: 4 chunks
    wire = Encoder(cipher, key).encode(data)
    assert len(wire) == 16 + len(data) + 4 * (2 + 2 * TAG_SIZE)
    decoder = Decoder(cipher, key)
    assert decoder.decode(wire) == data and decoder.chunks == 4


@pytest.mark.parametrize(
    "host, port, encoded",
    [
        ("127.0.0.1", 993, b"\x01\x7f\x00\x00\x01\x03\xe1"),
        ("::1", 465, b"\x04" + bytes(15) + b"\x01\x01\xd1"),
        ("chat.example.org", 443, b"\x03\x10chat.example.org\x01\xbb"),
    ],
)
def test_socks_addresses(host: str, port: int, encoded: bytes) -> None:
    assert encode_address(host, port) == encoded
    assert parse_address(encoded + b"rest") == (host, port, len(encoded))
    for cut in range(len(encoded)):
        assert parse_address(encoded[:cut]) is None


@pytest.mark.parametrize(
    "bad", [b"\x02abc", b"\x05", b"\x03\x00\x01\xbb", b"\x03\x02\xff\xfe\x00\x19"]
)
def test_bad_addresses(bad: bytes) -> None:
    with pytest.raises(AddressError):
        parse_address(bad)


def test_the_salt_filter_is_bounded_and_keeps_the_newest() -> None:
    salts = SaltFilter(capacity=100)
    for i in range(1000):
        salts.add(i.to_bytes(32, "big"))
        assert len(salts) <= 200
    assert all(i.to_bytes(32, "big") in salts for i in range(900, 1000))
    assert (0).to_bytes(32, "big") not in salts


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(NAMES), pieces=st.lists(st.binary(max_size=300), max_size=8))
def test_hostile_bytes_only_ever_fail_as_decrypt_errors(name: str, pieces: list[bytes]) -> None:
    cipher = CIPHERS[name]
    decoder = Decoder(cipher, master_key("pw", cipher.key_size))
    try:
        for piece in pieces:
            assert decoder.decode(piece) == b""  # nothing forged authenticates
    except DecryptError:
        pass


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300))
def test_any_first_payload_parses_or_fails_as_an_address_error(data: bytes) -> None:
    try:
        parsed = parse_address(data)
    except AddressError:
        return
    if parsed is not None:
        host, port, used = parsed
        assert 0 <= port < 65536 and used <= len(data) and host
