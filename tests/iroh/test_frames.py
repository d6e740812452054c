"""The iroh 0.35 frame codec and ClientInfo handshake (relay/iroh/frames.py)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from relay.iroh import frames
from relay.iroh.frames import Decoder, Frame, FrameError


def public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def decode_all(data: bytes) -> list[Frame]:
    decoder = Decoder()
    decoder.feed(data)
    out = []
    while (frame := decoder.next_frame()) is not None:
        out.append(frame)
    assert decoder.pending == 0
    return out


def test_header_is_type_byte_and_u32_big_endian_length():
    assert frames.encode(frames.PING, b"12345678") == b"\x0c\x00\x00\x00\x0812345678"
    assert frames.encode(frames.KEEP_ALIVE) == b"\x06\x00\x00\x00\x00"


def test_magic_is_relay_and_key_emoji():
    assert frames.MAGIC == b"RELAY\xf0\x9f\x94\x91"


def test_frames_split_across_reads_and_joined_in_one():
    data = frames.encode(frames.PING, b"a" * 8) + frames.send_packet(b"k" * 32, b"hello")
    decoder = Decoder()
    got = []
    for i in range(len(data)):  # one byte at a time
        decoder.feed(data[i : i + 1])
        while (frame := decoder.next_frame()) is not None:
            got.append(frame)
    assert got == decode_all(data)
    assert got[1] == Frame(frames.SEND_PACKET, b"k" * 32 + b"hello")
    assert frames.split_packet(got[1]) == (b"k" * 32, b"hello")


def test_oversize_frame_refused_from_its_header_alone():
    decoder = Decoder()
    decoder.feed(frames.HEADER.pack(frames.SEND_PACKET, frames.MAX_FRAME_SIZE + 1))
    with pytest.raises(FrameError, match="exceeds"):
        decoder.next_frame()
    with pytest.raises(ValueError):
        frames.encode(frames.SEND_PACKET, b"x" * (frames.MAX_FRAME_SIZE + 1))


def test_largest_frame_accepted():
    payload = b"x" * frames.MAX_FRAME_SIZE
    assert decode_all(frames.encode(99, payload)) == [Frame(99, payload)]


def test_oversize_packet_refused():
    frame = Frame(frames.SEND_PACKET, b"k" * 32 + b"x" * (frames.MAX_PACKET_SIZE + 1))
    with pytest.raises(FrameError, match="packet"):
        frames.split_packet(frame)
    with pytest.raises(FrameError):
        frames.split_packet(Frame(frames.SEND_PACKET, b"short"))


def test_truncated_frame_stays_pending():
    data = frames.send_packet(b"k" * 32, b"hello")
    decoder = Decoder()
    decoder.feed(data[:-1])
    assert decoder.next_frame() is None
    assert decoder.pending == len(data) - 1
    decoder.feed(data[:3])  # a header cut in the middle
    decoder2 = Decoder()
    decoder2.feed(data[:3])
    assert decoder2.next_frame() is None


def test_unknown_frame_type_is_decoded_not_refused():
    assert decode_all(frames.encode(200, b"future")) == [Frame(200, b"future")]
    assert 200 not in frames.KNOWN_TYPES


def test_client_info_with_valid_signature():
    key = Ed25519PrivateKey.generate()
    data = frames.client_info(key)
    (frame,) = decode_all(data)
    # magic + key + signature + postcard(ClientInfo { version: 3 }) = one byte 0x03
    assert len(frame.payload) == 9 + 32 + 64 + 1 and frame.payload[-1] == 3
    info = frames.parse_client_info(frame)
    assert info.key == public(key) and info.version == 3


def test_client_info_signed_by_another_key_refused():
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    (frame,) = decode_all(frames.client_info(key))
    forged = frame.payload[:9] + public(other) + frame.payload[41:]
    with pytest.raises(FrameError, match="signature"):
        frames.parse_client_info(Frame(frames.CLIENT_INFO, forged))


def test_client_info_with_altered_message_refused():
    (frame,) = decode_all(frames.client_info(Ed25519PrivateKey.generate()))
    with pytest.raises(FrameError, match="signature"):
        frames.parse_client_info(Frame(frames.CLIENT_INFO, frame.payload[:-1] + b"\x04"))


@pytest.mark.parametrize(
    "payload",
    [b"", b"RELAY", b"NOTMAGIC!" + b"\0" * 97, frames.MAGIC + b"\0" * 96],
    ids=["empty", "magic-only", "bad-magic", "no-message"],
)
def test_malformed_client_info_refused(payload):
    with pytest.raises(FrameError):
        frames.parse_client_info(Frame(frames.CLIENT_INFO, payload))


def test_not_a_valid_point_refused():
    payload = frames.MAGIC + b"\xff" * 32 + b"\0" * 64 + b"\x03"
    with pytest.raises(FrameError):
        frames.parse_client_info(Frame(frames.CLIENT_INFO, payload))


def test_first_frame_must_be_client_info():
    with pytest.raises(FrameError, match="expected ClientInfo"):
        frames.parse_client_info(Frame(frames.PING, b"x" * 8))


def test_multi_byte_version_varint():
    (frame,) = decode_all(frames.client_info(Ed25519PrivateKey.generate(), version=300))
    assert frames.parse_client_info(frame).version == 300
