"""The OpenPGP armor and packet walk on its own."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.policy.openpgp import NotEncrypted, check_encrypted_packets, dearmor
from tests.policy.corpus import (
    armor,
    crlf,
    new_packet,
    partial_packet,
    pkesk_v6,
    seipd_v2,
    skesk_v6,
)


def test_accepts_many_session_keys_then_seipd() -> None:
    check_encrypted_packets(pkesk_v6() * 3 + skesk_v6() + seipd_v2())


def test_two_octet_and_four_octet_lengths() -> None:
    check_encrypted_packets(pkesk_v6() + new_packet(18, bytes([1]) + b"\x00" * 500))
    big = bytes([0xD2, 0xFF]) + (70_000).to_bytes(4, "big") + bytes([2]) + b"\x00" * 69_999
    check_encrypted_packets(pkesk_v6() + big)


def test_partial_lengths_with_small_chunks() -> None:
    check_encrypted_packets(pkesk_v6() + partial_packet(18, bytes([1]) + b"\x01" * 5000, 0))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        pkesk_v6(),
        pkesk_v6() + seipd_v2()[:-1],
        pkesk_v6() + bytes([0xD2]),  # header without length
        pkesk_v6() + bytes([0xD2, 0xE9]) + b"\x02" * 512,  # partial chunk, then nothing
        pkesk_v6() + bytes([0x4A, 0x00]),  # not a packet header
        bytes([0x87]) + b"\x03" * 20 + seipd_v2(),  # old format, indeterminate length
        new_packet(1, b"") + seipd_v2(),  # empty PKESK
        new_packet(1, bytes([5]) + b"\x00" * 10) + seipd_v2(),  # unknown PKESK version
    ],
)
def test_rejects_malformed(data: bytes) -> None:
    with pytest.raises(NotEncrypted):
        check_encrypted_packets(data)


def test_dearmor_accepts_missing_blank_line_and_strips_crc() -> None:
    packets = pkesk_v6() + seipd_v2()
    text = crlf(armor(packets))
    assert dearmor(text, allow_headers=False) == packets
    assert dearmor(text.replace(b"-----\r\n\r\n", b"-----\r\n", 1), allow_headers=False) == packets


def test_dearmor_needs_crlf_after_begin() -> None:
    with pytest.raises(NotEncrypted):
        dearmor(armor(pkesk_v6() + seipd_v2()).encode(), allow_headers=True)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(NotEncrypted):
        check_encrypted_packets(data)
    with contextlib.suppress(NotEncrypted):
        dearmor(b"-----BEGIN PGP MESSAGE-----\r\n" + data, allow_headers=True)
