"""The STUN codec: RFC 5769's test vector, integrity and fingerprint over what was built, the
framing checks, XOR addresses and ChannelData."""

from __future__ import annotations

import pytest

from relay.turn import stun

# RFC 5769 §2.1: a Binding request with short-term credentials (key = the password).
RFC5769_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e20746573742063 6c69656e74".replace(
        " ", ""
    )
    + "002400046e0001ff"
    "80290008932ff9b151263b36"
    "000600096576746a3a68367659202020"
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004e57a3bcf"
)
RFC5769_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"


def test_rfc5769_request_checks():
    msg = stun.parse(RFC5769_REQUEST)
    assert (msg.method, msg.cls) == (stun.BINDING, stun.REQUEST)
    assert msg.get(stun.USERNAME) == b"evtj:h6vY"
    assert msg.fingerprint_ok is True
    assert stun.check_integrity(msg, RFC5769_PASSWORD)
    assert not stun.check_integrity(msg, b"wrong")


def test_encode_then_parse_checks_integrity_and_fingerprint():
    key = stun.long_term_key("1767225600", "example.org", "pw")
    msg = stun.Message(stun.ALLOCATE, stun.REQUEST, b"0123456789ab")
    msg.add(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0])).add(stun.USERNAME, b"1767225600")
    raw = stun.encode(msg, key=key)
    back = stun.parse(raw)
    assert back.fingerprint_ok is True and stun.check_integrity(back, key)
    assert back.get(stun.REQUESTED_TRANSPORT) == bytes([17, 0, 0, 0])
    tampered = bytearray(raw)
    tampered[25] ^= 1  # inside REQUESTED-TRANSPORT
    bad = stun.parse(bytes(tampered))
    assert bad.fingerprint_ok is False and not stun.check_integrity(bad, key)


def test_attributes_after_integrity_are_ignored_except_fingerprint():
    key = b"k"
    raw = stun.encode(stun.Message(stun.REFRESH, stun.REQUEST, b"x" * 12), key=key)
    assert [kind for kind, _ in stun.parse(raw).attrs] == [stun.MESSAGE_INTEGRITY]


def test_long_term_key_is_md5_of_user_realm_password():
    import hashlib

    assert stun.long_term_key("u", "r", "p") == hashlib.md5(b"u:r:p").digest()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01\x00\x00" + b"\x00" * 16,  # no magic cookie
        b"\x00\x01\x00\x04\x21\x12\xa4\x42" + b"t" * 12,  # length beyond the datagram
        b"\x00\x01\x00\x03\x21\x12\xa4\x42" + b"t" * 12 + b"abc",  # length not a multiple of 4
        b"\x00\x01\x00\x04\x21\x12\xa4\x42" + b"t" * 12 + b"\x00\x06\x00\x08",  # attr too long
        # an attribute after FINGERPRINT
        b"\x00\x01\x00\x10\x21\x12\xa4\x42"
        + b"t" * 12
        + b"\x80\x28\x00\x04abcd"
        + b"\x00\x06\x00\x00" * 2,
    ],
)
def test_malformed_messages_raise(data):
    with pytest.raises(stun.StunError):
        stun.parse(data)


def test_message_type_round_trips():
    for method in (stun.BINDING, stun.ALLOCATE, stun.CHANNEL_BIND, 0xFFF):
        for cls in range(4):
            assert stun.split_type(stun.message_type(method, cls)) == (method, cls)
    assert stun.message_type(stun.ALLOCATE, stun.ERROR) == 0x0113
    assert stun.message_type(stun.DATA, stun.INDICATION) == 0x0017


@pytest.mark.parametrize(
    "address", [("192.0.2.1", 32853), ("2001:db8:1234:5678:11:2233:4455:6677", 32853)]
)
def test_xor_address_round_trip(address):
    txid = bytes.fromhex("b7e7a701bc34d686fa87dfae")
    value = stun.xor_address(address, txid)
    assert stun.parse_xor_address(value, txid) == address


def test_rfc5769_ipv4_xor_mapped_address():
    # RFC 5769 §2.2: 192.0.2.1 port 32853
    assert stun.xor_address(("192.0.2.1", 32853), b"\0" * 12) == bytes.fromhex("0001a147e112a643")


def test_error_code_and_channel_data():
    value = stun.error_code(438)
    assert value[:4] == b"\x00\x00\x04\x26" and value[4:] == b"Stale Nonce"
    assert stun.parse_error_code(value) == 438
    frame = stun.channel_data(0x4001, b"hello")
    assert stun.is_channel_data(frame) and not stun.is_stun(frame)
    assert stun.parse_channel_data(frame + b"\0\0\0") == (0x4001, b"hello")
    with pytest.raises(stun.StunError):
        stun.parse_channel_data(frame[:-1])
