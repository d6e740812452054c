"""Test messages for the PGP gate: real PGP/MIME made with PGPy, the anchor's sample kinds
(recreated here, not copied) and crafted bypass attempts."""

from __future__ import annotations

import base64
import functools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pgpy
from pgpy.constants import (
    CompressionAlgorithm,
    HashAlgorithm,
    KeyFlags,
    PubKeyAlgorithm,
    SymmetricKeyAlgorithm,
)

warnings.filterwarnings("ignore", module="pgpy")

# Outer messages captured from the real Delta Chat core (2.x) sending through this relay in an
# end-to-end run: SKESK v6 / PKESK v6 and SEIPD v2, which PGPy cannot produce.
DATA = Path(__file__).parent / "data"

SENDER = "alice0001@[127.0.0.1]"
RECIPIENT = "bob000001@[127.0.0.1]"
PASS = "pass"


@functools.cache
def keys() -> tuple[pgpy.PGPKey, pgpy.PGPKey]:
    made = []
    for name in ("alice", "bob"):
        key = pgpy.PGPKey.new(PubKeyAlgorithm.RSAEncryptOrSign, 2048)
        key.add_uid(
            pgpy.PGPUID.new(name, email=f"{name}@example.org"),
            usage={KeyFlags.EncryptCommunications, KeyFlags.Sign},
            hashes=[HashAlgorithm.SHA256],
            ciphers=[SymmetricKeyAlgorithm.AES256],
            compression=[CompressionAlgorithm.Uncompressed],
        )
        made.append(key)
    return made[0], made[1]


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def armor(packets: bytes, headers: str = "") -> str:
    lines = [base64.b64encode(packets[i : i + 48]).decode() for i in range(0, len(packets), 48)]
    return (
        "-----BEGIN PGP MESSAGE-----\n"
        + headers
        + "\n"
        + "\n".join(lines)
        + "\n=AbCd\n"
        + ("-----END PGP MESSAGE-----\n")
    )


def pgp_mime(
    payload: str,
    *,
    sender: str = SENDER,
    control: str = "Version: 1",
    extra_parts: str = "",
    top_type: str = 'multipart/encrypted; protocol="application/pgp-encrypted"',
    payload_headers: str = "Content-Type: application/octet-stream",
    close: bool = True,
) -> bytes:
    """A message shaped like Delta Chat's outer PGP/MIME envelope."""
    text = (
        f"From: <{sender}>\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\n"
        "Message-ID: <0b1c2d3e@localhost>\n"
        'To: "hidden-recipients": ;\n'
        "Subject: [...]\n"
        f'Content-Type: {top_type}; boundary="XYZ"\n'
        "MIME-Version: 1.0\n"
        "\n"
        "--XYZ\n"
        "Content-Type: application/pgp-encrypted\n"
        "Content-Description: PGP/MIME version identification\n"
        "\n"
        f"{control}\n"
        "\n"
        "--XYZ\n"
        f"{payload_headers}\n"
        "\n"
        f"{payload}"
        "\n"
        f"{extra_parts}"
    )
    if close:
        text += "--XYZ--\n"
    return crlf(text)


def encrypted_to(*recipients: pgpy.PGPKey) -> bytes:
    """Binary OpenPGP: one PKESK per recipient, then SEIPD (PGPy writes v4/SEIPD v1)."""
    message = pgpy.PGPMessage.new("hello", compression=CompressionAlgorithm.Uncompressed)
    if len(recipients) == 1:
        return bytes(recipients[0].pubkey.encrypt(message))
    cipher = SymmetricKeyAlgorithm.AES256
    session_key = cipher.gen_key()
    for key in recipients:
        message = key.pubkey.encrypt(message, cipher=cipher, sessionkey=session_key)
    return bytes(message)


def symmetric() -> bytes:
    message = pgpy.PGPMessage.new("hello", compression=CompressionAlgorithm.Uncompressed)
    return bytes(message.encrypt("shared secret from the QR code"))


def literal() -> bytes:
    return bytes(pgpy.PGPMessage.new("hi", compression=CompressionAlgorithm.Uncompressed))


def compressed() -> bytes:
    return bytes(pgpy.PGPMessage.new("hi", compression=CompressionAlgorithm.ZIP))


def new_packet(tag: int, body: bytes) -> bytes:
    if len(body) < 192:
        return bytes([0xC0 | tag, len(body)]) + body
    return bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body


def partial_packet(tag: int, body: bytes, chunk_power: int = 9) -> bytes:
    """New-format packet with partial body lengths of 2**chunk_power octets."""
    chunk = 1 << chunk_power
    out = bytearray([0xC0 | tag])
    while len(body) > chunk:
        out += bytes([0xE0 | chunk_power]) + body[:chunk]
        body = body[chunk:]
    out += bytes([len(body)]) if len(body) < 192 else bytes([0xFF]) + len(body).to_bytes(4, "big")
    return bytes(out + body)


def pkesk_v6() -> bytes:
    return new_packet(1, bytes([6]) + b"\x00" * 40)


def skesk_v6() -> bytes:
    return new_packet(3, bytes([6]) + b"\x11" * 30)


def seipd_v2(size: int = 100) -> bytes:
    return new_packet(18, bytes([2, 9, 2, 16]) + b"\x42" * size)


def plain_message(body: str, *, headers: str = "", sender: str = SENDER) -> bytes:
    return crlf(
        f"From: {sender}\nTo: {RECIPIENT}\nSubject: hello\n{headers}"
        f"Content-Type: text/plain; charset=utf-8\n\n{body}\n"
    )


def securejoin(text: str, header: str = "vc-request", parts: int = 1) -> bytes:
    part = f"--B\nContent-Type: text/plain; charset=utf-8\n\n{text}\n"
    return crlf(
        f"From: <{SENDER}>\nTo: <{RECIPIENT}>\nSubject: Message from alice\n"
        f"Secure-Join: {header}\nChat-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="B"\n\n' + part * parts + "--B--\n"
    )


def autocrypt_setup(sender: str = SENDER) -> bytes:
    return crlf(
        f"From: <{sender}>\nTo: <{sender}>\nSubject: Autocrypt Setup Message\n"
        "Autocrypt-Setup-Message: v1\n"
        'Content-Type: multipart/mixed; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nThis is the Autocrypt Setup Message.\n"
        "--B\nContent-Type: application/autocrypt-setup\n"
        'Content-Disposition: attachment; filename="autocrypt-setup-message.html"\n\n'
        "<html><body><pre>-----BEGIN PGP MESSAGE-----\nPassphrase-Format: numeric9x4\n"
        "</pre></body></html>\n--B--\n"
    )


def mailer_daemon(auto_submitted: str = "auto-replied") -> bytes:
    header = f"Auto-Submitted: {auto_submitted}\n" if auto_submitted else ""
    return crlf(
        "From: MAILER-DAEMON@remote.example (Mail Delivery System)\n"
        f"To: <{RECIPIENT}>\nSubject: Undelivered Mail Returned to Sender\n{header}"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\n\n'
        "--R\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
        "--R\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; remote.example\n\n"
        "Final-Recipient: rfc822; gone@remote.example\nAction: failed\nStatus: 5.1.1\n"
        "--R--\n"
    )


def mdn() -> bytes:
    return crlf(
        f"From: <{SENDER}>\nTo: <{RECIPIENT}>\nSubject: Receipt Notification\n"
        "Chat-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="M"\n\n'
        "--M\nContent-Type: text/plain\n\nThis is a receipt notification.\n"
        "--M\nContent-Type: message/disposition-notification\n\n"
        "Original-Message-ID: <x@localhost>\nDisposition: manual-action/MDN-sent-automatically;"
        " displayed\n--M--\n"
    )


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    outgoing: str  # "accept" or the expected reply prefix
    incoming: str
    recipients: tuple[str, ...] = (RECIPIENT,)
    mail_from: str = SENDER


def pgpy_armor(packets: bytes) -> str:
    """PGPy's own armor (with its CRC24 line) around binary packets."""
    return str(pgpy.PGPMessage.from_blob(packets))


UNENC = "523 5.7.1 Encryption Needed: Invalid Unencrypted Mail"


def real_client_samples() -> list[Sample]:
    found = []
    for path in sorted(DATA.glob("deltachat-*.eml")):
        data = path.read_bytes()
        sender = re.search(rb"^From: <([^>]+)>", data, re.MULTILINE).group(1).decode()
        found.append(Sample(path.stem, data, "accept", "accept", mail_from=sender))
        # the same message with a literal-data packet smuggled after its SEIPD
        head, _, rest = data.partition(b"-----BEGIN PGP MESSAGE-----\r\n")
        armored, _, tail = rest.partition(b"-----END PGP MESSAGE-----\r\n")
        lines = [line for line in armored.split(b"\r\n") if line and not line.startswith(b"=")]
        packets = base64.b64decode(b"".join(lines)) + literal()
        forged = head + crlf(armor(packets)) + tail
        found.append(Sample(path.stem + "-plus-literal", forged, UNENC, UNENC, mail_from=sender))
    return found


@functools.cache
def samples() -> list[Sample]:
    alice, bob = keys()
    to_bob = encrypted_to(bob)
    two_seipd = to_bob + new_packet(18, bytes([1]) + b"\x00" * 40)
    old_format_pkesk = bytes([0x84, 41]) + bytes([3]) + b"\x00" * 40  # tag 1, 1-octet length
    version_header = armor(to_bob, headers="Version: Other MUA 1.0\n")
    three_parts = "--XYZ\nContent-Type: application/octet-stream\n\n" + armor(to_bob) + "\n"
    mixed_pgp = pgp_mime(armor(to_bob), top_type="multipart/mixed")
    two_types = crlf("Content-Type: text/plain\n") + pgp_mime(armor(to_bob))
    nested = pgp_mime(
        "--IN\nContent-Type: application/octet-stream\n\n" + armor(to_bob) + "\n--IN--",
        payload_headers='Content-Type: multipart/mixed; boundary="IN"',
    )
    b64_payload = "\n".join(base64.encodebytes(crlf(pgpy_armor(to_bob))).decode().splitlines())
    only_control = crlf(
        f"From: <{SENDER}>\nTo: <{RECIPIENT}>\nSubject: [...]\n"
        'Content-Type: multipart/encrypted; boundary="XYZ"\n\n'
        "--XYZ\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--XYZ--\n"
    )
    truncated = pgp_mime(armor(to_bob)[: len(armor(to_bob)) // 2])
    return real_client_samples() + [
        # real PGP/MIME made with PGPy
        Sample("pgpy-one-recipient", pgp_mime(pgpy_armor(to_bob)), "accept", "accept"),
        Sample(
            "pgpy-two-recipients",
            pgp_mime(pgpy_armor(encrypted_to(alice, bob))),
            "accept",
            "accept",
        ),
        Sample("pgpy-symmetric-skesk", pgp_mime(pgpy_armor(symmetric())), "accept", "accept"),
        Sample(
            "pgpy-base64-transfer-encoding",
            pgp_mime(
                b64_payload,
                payload_headers="Content-Type: application/octet-stream\n"
                "Content-Transfer-Encoding: base64",
            ),
            "accept",
            "accept",
        ),
        Sample(
            "armor-without-crc", pgp_mime(armor(to_bob).replace("=AbCd\n", "")), "accept", "accept"
        ),
        # packet shapes of current Delta Chat (RFC 9580) and legacy encoders
        Sample("v6-pkesk-seipd-v2", pgp_mime(armor(pkesk_v6() + seipd_v2())), "accept", "accept"),
        Sample("v6-skesk-seipd-v2", pgp_mime(armor(skesk_v6() + seipd_v2())), "accept", "accept"),
        Sample(
            "seipd-v2-partial-lengths",
            pgp_mime(armor(pkesk_v6() + partial_packet(18, bytes([2]) + b"\x42" * 3000))),
            "accept",
            "accept",
        ),
        Sample(
            "old-format-pkesk", pgp_mime(armor(old_format_pkesk + seipd_v2())), "accept", "accept"
        ),
        # the anchor's sample kinds
        Sample("fake-encrypted", plain_message(armor(b"Hi!")), UNENC, UNENC),
        Sample("literal", pgp_mime(armor(literal())), UNENC, UNENC),
        Sample("plain", plain_message("Hello Bob"), UNENC, UNENC),
        Sample("securejoin-vc", securejoin("Secure-Join: vc-request"), "accept", "accept"),
        Sample("securejoin-vg", securejoin("secure-join: vg-request"), "accept", "accept"),
        Sample("securejoin-vc-fake", securejoin("Buy viagra!"), UNENC, UNENC),
        Sample("asm-to-self", autocrypt_setup(), "accept", UNENC, recipients=(SENDER,)),
        Sample("asm-to-self-and-other", autocrypt_setup(), UNENC, UNENC, (SENDER, RECIPIENT)),
        Sample("asm-to-other", autocrypt_setup(), UNENC, UNENC),
        Sample(
            "mailer-daemon",
            mailer_daemon(),
            UNENC,
            "accept",
            mail_from="MAILER-DAEMON@remote.example",
        ),
        Sample(
            "mailer-daemon-without-auto-submitted",
            mailer_daemon(""),
            UNENC,
            UNENC,
            mail_from="MAILER-DAEMON@remote.example",
        ),
        Sample("mdn-cleartext", mdn(), UNENC, UNENC),
        # bypass attempts
        Sample(
            "plain-mentions-pgp-encrypted",
            plain_message(
                "Content-Type: multipart/encrypted; protocol=application/pgp-encrypted\n"
                + armor(to_bob),
                headers="X-Note: application/pgp-encrypted\n",
            ),
            UNENC,
            UNENC,
        ),
        Sample("two-seipd", pgp_mime(armor(two_seipd)), UNENC, UNENC),
        Sample("seipd-without-session-key", pgp_mime(armor(seipd_v2())), UNENC, UNENC),
        Sample("trailing-bytes-after-seipd", pgp_mime(armor(to_bob + b"\x00")), UNENC, UNENC),
        Sample("session-key-then-literal", pgp_mime(armor(pkesk_v6() + literal())), UNENC, UNENC),
        Sample("compressed", pgp_mime(armor(compressed())), UNENC, UNENC),
        Sample(
            "aead-tag-20", pgp_mime(armor(pkesk_v6() + new_packet(20, b"\x01" * 50))), UNENC, UNENC
        ),
        Sample(
            "seipd-unknown-version",
            pgp_mime(armor(pkesk_v6() + new_packet(18, b"\x07" * 40))),
            UNENC,
            UNENC,
        ),
        Sample(
            "length-past-end",
            pgp_mime(armor(pkesk_v6() + bytes([0xD2, 0xFF, 0, 0, 1, 0]) + b"\x01" * 10)),
            UNENC,
            UNENC,
        ),
        Sample(
            "partial-length-on-pkesk",
            pgp_mime(armor(partial_packet(1, bytes([3]) + b"\x00" * 600) + seipd_v2())),
            UNENC,
            UNENC,
        ),
        Sample("truncated-armor", truncated, UNENC, UNENC),
        Sample(
            "bad-base64", pgp_mime(armor(to_bob).replace("\n=AbCd", "\n!!!!\n=AbCd")), UNENC, UNENC
        ),
        Sample("three-parts", pgp_mime(armor(to_bob), extra_parts=three_parts), UNENC, UNENC),
        Sample("only-control-part", only_control, UNENC, UNENC),
        Sample("no-closing-boundary", pgp_mime(armor(to_bob), close=False), UNENC, UNENC),
        Sample("control-version-2", pgp_mime(armor(to_bob), control="Version: 2"), UNENC, UNENC),
        Sample("version-armor-header", pgp_mime(version_header), UNENC, "accept"),
        Sample("multipart-mixed-with-pgp", mixed_pgp, UNENC, UNENC),
        Sample("nested-multipart-payload", nested, UNENC, UNENC),
        Sample(
            "two-content-type-fields",
            two_types,
            "500 5.6.0 Failed to parse message",
            "500 5.6.0 Failed",
        ),
        Sample(
            "securejoin-two-parts",
            securejoin("secure-join: vc-request", parts=2),
            UNENC,
            UNENC,
        ),
        Sample(
            "securejoin-wrong-header",
            securejoin("secure-join: vc-request", "vc-auth"),
            UNENC,
            UNENC,
        ),
    ]
