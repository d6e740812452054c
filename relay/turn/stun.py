"""The STUN message format (RFC 8489) with the TURN attributes (RFC 8656), sans-IO.

`parse()` checks the header and the attribute framing and keeps the raw bytes, so
MESSAGE-INTEGRITY and FINGERPRINT can be verified over exactly what arrived; `encode()` builds a
message and appends MESSAGE-INTEGRITY (HMAC-SHA1 with the long-term key) and FINGERPRINT.
ChannelData frames (RFC 8656 §12.4) are the other kind of datagram a TURN client sends.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
import zlib
from dataclasses import dataclass, field

MAGIC_COOKIE = 0x2112A442
COOKIE_BYTES = struct.pack("!I", MAGIC_COOKIE)
HEADER = 20
FINGERPRINT_XOR = 0x5354554E

# methods
BINDING = 0x001
ALLOCATE = 0x003
REFRESH = 0x004
SEND = 0x006
DATA = 0x007
CREATE_PERMISSION = 0x008
CHANNEL_BIND = 0x009

# classes
REQUEST = 0
INDICATION = 1
SUCCESS = 2
ERROR = 3

# attributes
MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
CHANNEL_NUMBER = 0x000C
LIFETIME = 0x000D
XOR_PEER_ADDRESS = 0x0012
DATA_ATTR = 0x0013
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_ADDRESS_FAMILY = 0x0017
EVEN_PORT = 0x0018
REQUESTED_TRANSPORT = 0x0019
DONT_FRAGMENT = 0x001A
MESSAGE_INTEGRITY_SHA256 = 0x001C
USERHASH = 0x001E
XOR_MAPPED_ADDRESS = 0x0020
RESERVATION_TOKEN = 0x0022
SOFTWARE = 0x8022
FINGERPRINT = 0x8028

ERROR_REASONS = {
    300: "Try Alternate",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    486: "Allocation Quota Reached",
    500: "Server Error",
    508: "Insufficient Capacity",
}

Address = tuple[str, int]


class StunError(ValueError):
    """Not a well-formed STUN message."""


@dataclass
class Message:
    method: int
    cls: int
    txid: bytes
    attrs: list[tuple[int, bytes]] = field(default_factory=list)
    raw: bytes = b""  # what arrived (parse) or what was built (encode)
    integrity_at: int = -1  # offset of MESSAGE-INTEGRITY in raw, -1 if absent
    fingerprint_ok: bool | None = None  # None: no FINGERPRINT

    def get(self, attr: int) -> bytes | None:
        for kind, value in self.attrs:
            if kind == attr:
                return value
        return None

    def get_all(self, attr: int) -> list[bytes]:
        return [value for kind, value in self.attrs if kind == attr]

    def add(self, attr: int, value: bytes) -> Message:
        self.attrs.append((attr, value))
        return self

    def txid_header(self) -> bytes:
        return COOKIE_BYTES + self.txid


def message_type(method: int, cls: int) -> int:
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((cls & 1) << 4)
        | ((cls & 2) << 7)
    )


def split_type(kind: int) -> tuple[int, int]:
    method = (kind & 0x000F) | ((kind & 0x00E0) >> 1) | ((kind & 0x3E00) >> 2)
    cls = ((kind >> 4) & 1) | ((kind >> 7) & 2)
    return method, cls


def is_stun(data: bytes) -> bool:
    """The first two bits are 0 and the magic cookie is in place (RFC 8489 §6)."""
    return len(data) >= HEADER and data[0] < 0x40 and data[4:8] == COOKIE_BYTES


def parse(data: bytes) -> Message:
    if not is_stun(data):
        raise StunError("not a STUN message")
    kind, length = struct.unpack_from("!HH", data)
    if length % 4 or HEADER + length != len(data):
        raise StunError("length does not match the datagram")
    method, cls = split_type(kind)
    msg = Message(method, cls, data[8:20], raw=data)
    pos = HEADER
    while pos < len(data):
        if pos + 4 > len(data):
            raise StunError("truncated attribute header")
        attr, size = struct.unpack_from("!HH", data, pos)
        end = pos + 4 + size
        if end > len(data):
            raise StunError("attribute runs past the message")
        value = data[pos + 4 : end]
        if msg.fingerprint_ok is not None:
            raise StunError("attribute after FINGERPRINT")
        if attr == FINGERPRINT:
            if size != 4 or end != len(data):
                raise StunError("FINGERPRINT must be the last attribute")
            msg.fingerprint_ok = struct.unpack("!I", value)[0] == _crc(data[:pos])
        elif msg.integrity_at < 0:  # attributes after MESSAGE-INTEGRITY are ignored (§14.5)
            if attr == MESSAGE_INTEGRITY:
                if size != 20:
                    raise StunError("MESSAGE-INTEGRITY must be 20 bytes")
                msg.integrity_at = pos
            msg.attrs.append((attr, value))
        pos = end + (-size % 4)
    if pos != len(data):
        raise StunError("attribute padding runs past the message")
    return msg


def check_integrity(msg: Message, key: bytes) -> bool:
    """MESSAGE-INTEGRITY over the message up to it, with the length as if it were the last."""
    if msg.integrity_at < 0:
        return False
    at = msg.integrity_at
    head = msg.raw[:2] + struct.pack("!H", at + 24 - HEADER) + msg.raw[4:at]
    expected = hmac.new(key, head, hashlib.sha1).digest()
    return hmac.compare_digest(expected, msg.raw[at + 4 : at + 24])


def encode(msg: Message, *, key: bytes | None = None, fingerprint: bool = True) -> bytes:
    body = b"".join(_attr(kind, value) for kind, value in msg.attrs)
    kind = message_type(msg.method, msg.cls)
    if key is not None:
        head = struct.pack("!HH", kind, len(body) + 24) + msg.txid_header()
        mac = hmac.new(key, head + body, hashlib.sha1).digest()
        body += _attr(MESSAGE_INTEGRITY, mac)
    if fingerprint:
        head = struct.pack("!HH", kind, len(body) + 8) + msg.txid_header()
        body += _attr(FINGERPRINT, struct.pack("!I", _crc(head + body)))
    raw = struct.pack("!HH", kind, len(body)) + msg.txid_header() + body
    msg.raw = raw
    return raw


def _attr(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def _crc(data: bytes) -> int:
    return (zlib.crc32(data) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """RFC 8489 §9.2.2: MD5(username ":" realm ":" password)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


# -- attribute values ----------------------------------------------------------------------------


def xor_address(address: Address, txid: bytes) -> bytes:
    ip = ipaddress.ip_address(address[0])
    port = address[1] ^ (MAGIC_COOKIE >> 16)
    if ip.version == 4:
        packed = int(ip) ^ MAGIC_COOKIE
        return struct.pack("!BBHI", 0, 1, port, packed)
    mask = int.from_bytes(COOKIE_BYTES + txid, "big")
    return struct.pack("!BBH", 0, 2, port) + (int(ip) ^ mask).to_bytes(16, "big")


def parse_xor_address(value: bytes, txid: bytes) -> Address:
    if len(value) < 4:
        raise StunError("address attribute too short")
    family, port = value[1], struct.unpack_from("!H", value, 2)[0] ^ (MAGIC_COOKIE >> 16)
    if family == 1 and len(value) == 8:
        ip4 = struct.unpack_from("!I", value, 4)[0] ^ MAGIC_COOKIE
        return str(ipaddress.IPv4Address(ip4)), port
    if family == 2 and len(value) == 20:
        mask = int.from_bytes(COOKIE_BYTES + txid, "big")
        ip6 = int.from_bytes(value[4:20], "big") ^ mask
        return str(ipaddress.IPv6Address(ip6)), port
    raise StunError("unknown address family")


def error_code(code: int, reason: str | None = None) -> bytes:
    text = ERROR_REASONS.get(code, "") if reason is None else reason
    return struct.pack("!HBB", 0, code // 100, code % 100) + text.encode()


def parse_error_code(value: bytes) -> int:
    if len(value) < 4:
        raise StunError("ERROR-CODE too short")
    return (value[2] & 0x7) * 100 + value[3]


def u32(value: int) -> bytes:
    return struct.pack("!I", value)


def parse_u32(value: bytes) -> int:
    if len(value) != 4:
        raise StunError("expected a 32-bit value")
    return int(struct.unpack("!I", value)[0])


# -- ChannelData ---------------------------------------------------------------------------------

# RFC 8656 narrowed the range to 0x4000-0x4FFF, but RFC 5766 clients (coturn's among them)
# still bind up to 0x7FFF, and both ranges are unambiguous next to STUN (first bits 00).
CHANNEL_MIN = 0x4000
CHANNEL_MAX = 0x7FFF


def is_channel_data(data: bytes) -> bool:
    return len(data) >= 4 and 0x40 <= data[0] <= 0x7F


def parse_channel_data(data: bytes) -> tuple[int, bytes]:
    """(channel number, application data); UDP may carry padding after the data."""
    if not is_channel_data(data):
        raise StunError("not a ChannelData message")
    channel, length = struct.unpack_from("!HH", data)
    if 4 + length > len(data):
        raise StunError("ChannelData shorter than its length")
    return channel, data[4 : 4 + length]


def channel_data(channel: int, data: bytes) -> bytes:
    return struct.pack("!HH", channel, len(data)) + data
