"""OpenPGP structure checks without decrypting: ASCII armor and a packet walk (RFC 9580 4.2).

An encrypted message is one or more session-key packets (PKESK, tag 1, or SKESK, tag 3) followed
by exactly one SEIPD packet (tag 18) that ends the data. Anything else (literal data, compressed
data, signatures in the clear, the old unprotected SED packet, AEAD tag 20, trailing bytes) is
not an encrypted message as Delta Chat sends it.
"""

from __future__ import annotations

import binascii

ARMOR_BEGIN = b"-----BEGIN PGP MESSAGE-----"
ARMOR_END = b"-----END PGP MESSAGE-----"

TAG_PKESK = 1
TAG_SKESK = 3
TAG_SEIPD = 18
# Version octets that current clients produce: PKESK v3 (RFC 4880) and v6, SKESK v4 and v6,
# SEIPD v1 (MDC) and v2 (AEAD, RFC 9580).
KNOWN_VERSIONS = {TAG_PKESK: (3, 6), TAG_SKESK: (4, 6), TAG_SEIPD: (1, 2)}
MAX_PARTS = 200_000  # partial-length chunks; bounds the work on hostile input


class NotEncrypted(Exception):
    """The data is not a well-formed encrypted OpenPGP message; the message says why."""


def dearmor(body: bytes, *, allow_headers: bool) -> bytes:
    """Decode an ASCII-armored PGP MESSAGE block (the whole body must be that block).

    Armor header lines (like `Version:`) are refused unless `allow_headers`: Delta Chat never
    sends them, other clients do. The CRC24 line is optional (RFC 9580 drops it) and not checked.
    """
    if not body.startswith(ARMOR_BEGIN + b"\r\n"):
        raise NotEncrypted("does not start with the armor BEGIN line")
    text = body[len(ARMOR_BEGIN) + 2 :]
    while text.endswith(b"\r\n"):
        text = text[:-2]
    if not text.endswith(ARMOR_END):
        raise NotEncrypted("does not end with the armor END line")
    lines = text[: -len(ARMOR_END)].split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the CRLF before the END line
    headers = 0
    while headers < len(lines) and b": " in lines[headers]:
        headers += 1
    if headers and not allow_headers:
        raise NotEncrypted("armor header lines are not allowed")
    data = lines[headers:]
    if data and data[0] == b"":
        data = data[1:]  # the blank line after the (possibly absent) armor headers
    if data and data[-1].startswith(b"=") and len(data[-1]) == 5:
        data = data[:-1]  # CRC24
    try:
        return binascii.a2b_base64(b"".join(data), strict_mode=True)
    except binascii.Error as e:
        raise NotEncrypted(f"bad base64 in armor: {e}") from None


def check_encrypted_packets(data: bytes) -> None:
    """Raise NotEncrypted unless `data` is session-key packets then exactly one final SEIPD."""
    pos, end = 0, len(data)
    session_keys = 0
    while pos < end:
        tag, body_start, body_end = _next_packet(data, pos)
        if body_end > end:
            raise NotEncrypted(f"packet with tag {tag} runs past the end")
        if body_start >= body_end or data[body_start] not in KNOWN_VERSIONS.get(tag, ()):
            raise NotEncrypted(f"packet tag {tag} is not PKESK, SKESK or SEIPD of a known version")
        if tag == TAG_SEIPD:
            if body_end != end:
                raise NotEncrypted("SEIPD is not the last packet")
            if not session_keys:
                raise NotEncrypted("no session key packet before SEIPD")
            return
        session_keys += 1
        pos = body_end
    raise NotEncrypted("no SEIPD packet")


def _next_packet(data: bytes, pos: int) -> tuple[int, int, int]:
    """Parse the packet header at `pos`: (tag, body start, body end).

    With partial body lengths (allowed for SEIPD only) the body is one span from the first
    octet of the first chunk (where the version octet is) to the end of the last chunk.
    """
    first = data[pos]
    if first & 0x80 == 0:
        raise NotEncrypted("not a packet header")
    if first & 0x40:  # new format
        tag = first & 0x3F
        length, pos, partial = _new_length(data, pos + 1)
        body_start = pos
        parts = 0
        while partial:
            parts += 1
            if tag != TAG_SEIPD or parts > MAX_PARTS:
                raise NotEncrypted("partial body length where it is not allowed")
            pos += length
            length, pos, partial = _new_length(data, pos)
        return tag, body_start, pos + length
    # Old format (RFC 4880 legacy): a 4-bit tag, so SEIPD (18) can never use it.
    tag = (first >> 2) & 0x0F
    kind = first & 0x03
    if kind == 3:
        raise NotEncrypted("indeterminate length")
    size = (1, 2, 4)[kind]
    if pos + 1 + size > len(data):
        raise NotEncrypted("truncated packet header")
    length = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
    return tag, pos + 1 + size, pos + 1 + size + length


def _new_length(data: bytes, pos: int) -> tuple[int, int, bool]:
    """A new-format length at `pos`: (length, position after it, is partial)."""
    if pos >= len(data):
        raise NotEncrypted("truncated packet header")
    octet = data[pos]
    if octet < 192:
        return octet, pos + 1, False
    if octet < 224:
        if pos + 2 > len(data):
            raise NotEncrypted("truncated packet header")
        return ((octet - 192) << 8) + data[pos + 1] + 192, pos + 2, False
    if octet == 255:
        if pos + 5 > len(data):
            raise NotEncrypted("truncated packet header")
        return int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5, False
    return 1 << (octet & 0x1F), pos + 1, True
