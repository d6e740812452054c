"""The iroh 0.35 relay wire format, sans-IO: frames, the ClientInfo handshake, a decoder.

A frame is one type byte, a u32 big-endian length, then that many bytes. This is the protocol
the Delta Chat 2.6x cores speak after `GET /relay` with `Upgrade: iroh derp http` (iroh-relay
0.35, protocol version 3), not iroh 1.x's WebSocket protocol. See docs/iroh.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HEADER = struct.Struct(">BI")
MAX_FRAME_SIZE = 1 << 20  # upstream MAX_FRAME_SIZE
MAX_PACKET_SIZE = 64 * 1024  # upstream MAX_PACKET_SIZE: the payload of a Send/RecvPacket
KEY_LEN = 32
SIGNATURE_LEN = 64
MAGIC = "RELAY🔑".encode()  # 9 bytes
PROTOCOL_VERSION = 3

CLIENT_INFO = 2
SEND_PACKET = 4
RECV_PACKET = 5
KEEP_ALIVE = 6
NOTE_PREFERRED = 7
PEER_GONE = 8
PING = 12
PONG = 13
HEALTH = 14
RESTARTING = 15
KNOWN_TYPES = frozenset(
    {
        CLIENT_INFO,
        SEND_PACKET,
        RECV_PACKET,
        KEEP_ALIVE,
        NOTE_PREFERRED,
        PEER_GONE,
        PING,
        PONG,
        HEALTH,
        RESTARTING,
    }
)


class FrameError(Exception):
    """The peer broke the framing or the handshake; the connection must end."""


@dataclass(frozen=True)
class Frame:
    type: int
    payload: bytes


def encode(frame_type: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_FRAME_SIZE:
        raise ValueError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_SIZE}")
    return HEADER.pack(frame_type, len(payload)) + payload


class Decoder:
    """Bytes in, whole frames out. An oversize length is refused as soon as the header is in,
    before its body is buffered; a frame cut off by the end of the stream stays incomplete."""

    def __init__(self, max_frame: int = MAX_FRAME_SIZE) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def pending(self) -> int:
        """Bytes received that are not yet a whole frame (non-zero at EOF: a truncated frame)."""
        return len(self._buffer)

    def next_frame(self) -> Frame | None:
        if len(self._buffer) < HEADER.size:
            return None
        frame_type, length = HEADER.unpack_from(self._buffer)
        if length > self.max_frame:
            raise FrameError(f"frame of {length} bytes exceeds {self.max_frame}")
        end = HEADER.size + length
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[HEADER.size : end])
        del self._buffer[:end]
        return Frame(frame_type, payload)


@dataclass(frozen=True)
class ClientInfo:
    key: bytes  # the node's Ed25519 public key, its address on the relay
    version: int


def _read_varint(data: bytes) -> int:
    """postcard's unsigned LEB128 (a usize is at most 10 bytes)."""
    value = 0
    for i, byte in enumerate(data[:10]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value
    raise FrameError("ClientInfo: bad varint")


def parse_client_info(frame: Frame) -> ClientInfo:
    """Check the first frame of a connection: magic, key, a valid signature over the message."""
    if frame.type != CLIENT_INFO:
        raise FrameError(f"expected ClientInfo, got frame type {frame.type}")
    data = frame.payload
    head = len(MAGIC) + KEY_LEN + SIGNATURE_LEN
    if len(data) <= head or not data.startswith(MAGIC):
        raise FrameError("ClientInfo: bad magic or too short")
    key = data[len(MAGIC) : len(MAGIC) + KEY_LEN]
    signature = data[len(MAGIC) + KEY_LEN : head]
    message = data[head:]
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise FrameError("ClientInfo: invalid signature") from None
    return ClientInfo(key, _read_varint(message))


def client_info(private_key: Ed25519PrivateKey, version: int = PROTOCOL_VERSION) -> bytes:
    """A ClientInfo frame as a 0.35 client sends it (tests and benchmarks act as clients)."""
    message = _varint(version)
    public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return encode(CLIENT_INFO, MAGIC + public + private_key.sign(message) + message)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def send_packet(dst: bytes, data: bytes) -> bytes:
    return encode(SEND_PACKET, dst + data)


def recv_packet(src: bytes, data: bytes) -> bytes:
    return encode(RECV_PACKET, src + data)


def split_packet(frame: Frame) -> tuple[bytes, bytes]:
    """(key, data) of a Send/RecvPacket."""
    if len(frame.payload) < KEY_LEN:
        raise FrameError("packet frame shorter than a key")
    data = frame.payload[KEY_LEN:]
    if len(data) > MAX_PACKET_SIZE:
        raise FrameError(f"packet of {len(data)} bytes exceeds {MAX_PACKET_SIZE}")
    return frame.payload[:KEY_LEN], data


def peer_gone(key: bytes) -> bytes:
    return encode(PEER_GONE, key)


def health(problem: str) -> bytes:
    return encode(HEALTH, problem.encode())
