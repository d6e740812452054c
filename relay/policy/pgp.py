"""The PGP-only gate: which messages count as encrypted, and the few that may pass without.

"Encrypted" means strict RFC 3156 PGP/MIME whose payload really is an encrypted OpenPGP
message (openpgp.py walks the packets); mentioning application/pgp-encrypted is not enough.
The exceptions are exactly the chatmail ones: a Secure-Join vc-/vg-request, an Autocrypt Setup
Message sent to oneself (outgoing only), and a mailer-daemon report (incoming only).
"""

from __future__ import annotations

from relay.addresses import parse_addresses
from relay.policy.openpgp import NotEncrypted, check_encrypted_packets, dearmor
from relay.policy.structure import MimeError, Part, children

SECUREJOIN_REQUESTS = ("vc-request", "vg-request")


def why_not_encrypted(message: Part, *, outgoing: bool) -> str | None:
    """None if `message` is an encrypted PGP/MIME message, else the reason (for logs)."""
    if message.content_type != "multipart/encrypted":
        return f"top-level type is {message.content_type}"
    try:
        parts = children(message)
    except MimeError as e:
        return str(e)
    if len(parts) != 2:
        return f"{len(parts)} parts instead of 2"
    control, payload = parts
    if control.content_type != "application/pgp-encrypted":
        return f"first part is {control.content_type}"
    if payload.content_type != "application/octet-stream":
        return f"second part is {payload.content_type}"
    try:
        if control.decoded_body().strip() != b"Version: 1":
            return "control part is not 'Version: 1'"
        # Incoming mail may come from MUAs that add armor headers; our own clients never do.
        check_encrypted_packets(dearmor(payload.decoded_body(), allow_headers=not outgoing))
    except (MimeError, NotEncrypted) as e:
        return str(e)
    return None


def is_securejoin_request(message: Part) -> bool:
    """The first Secure-Join step, which cannot be encrypted yet: a fixed one-line text."""
    if (message.header("Secure-Join") or "").strip() not in SECUREJOIN_REQUESTS:
        return False
    if not message.is_multipart:
        return False
    try:
        parts = children(message)
        if len(parts) != 1 or parts[0].content_type != "text/plain":
            return False
        text = parts[0].decoded_body().strip().lower()
    except MimeError:
        return False
    return text in {f"secure-join: {kind}".encode() for kind in SECUREJOIN_REQUESTS}


def is_autocrypt_setup_to_self(message: Part, from_address: str, recipients: list[str]) -> bool:
    """An Autocrypt Setup Message (the key backup, itself symmetrically encrypted) to oneself."""
    return (
        len(recipients) == 1
        and recipients[0].lower() == from_address.lower()
        and (message.header("Subject") or "").strip() == "Autocrypt Setup Message"
        and message.content_type == "multipart/mixed"
    )


def is_mailer_daemon_report(message: Part, from_address: str) -> bool:
    """A delivery status report from a mail system (bounces must reach the sender)."""
    return (
        bool((message.header("Auto-Submitted") or "").strip())
        and from_address.lower().startswith("mailer-daemon@")
        and message.content_type == "multipart/report"
    )


def from_address(message: Part) -> str | None:
    """The single address in the single From field, or None."""
    fields = message.headers.get_all("From") or []
    if len(fields) != 1:
        return None
    addresses = parse_addresses(str(fields[0]))
    if len(addresses) != 1:
        return None
    address = addresses[0][1]
    if address.count("@") != 1 or address.startswith("@") or address.endswith("@"):
        return None
    return address
