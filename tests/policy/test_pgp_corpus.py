"""The PGP gate against a corpus of real, sample and crafted messages, both directions."""

from __future__ import annotations

import pytest

from relay.policy.checks import check_incoming, check_outgoing
from tests.policy.corpus import (
    RECIPIENT,
    SENDER,
    Sample,
    encrypted_to,
    keys,
    pgp_mime,
    pgpy_armor,
    samples,
)

pytestmark = pytest.mark.filterwarnings("ignore")  # PGPy uses deprecated ciphers

ALL = samples()


def test_corpus_is_big_enough() -> None:
    assert len(ALL) >= 20
    assert len({s.name for s in ALL}) == len(ALL)


def _outcome(decision) -> str:  # type: ignore[no-untyped-def]
    return "accept" if decision.accepted else str(decision.reply)


@pytest.mark.parametrize("sample", ALL, ids=[s.name for s in ALL])
def test_outgoing(sample: Sample) -> None:
    decision = check_outgoing(sample.data, sample.mail_from, list(sample.recipients))
    assert _outcome(decision).startswith(sample.outgoing), decision


@pytest.mark.parametrize("sample", ALL, ids=[s.name for s in ALL])
def test_incoming(sample: Sample) -> None:
    decision = check_incoming(sample.data, sample.mail_from, list(sample.recipients))
    assert _outcome(decision).startswith(sample.incoming), decision


def test_outgoing_kinds_for_exceptions() -> None:
    by_name = {s.name: s for s in ALL}
    sj = by_name["securejoin-vc"]
    assert check_outgoing(sj.data, SENDER, [RECIPIENT]).kind == "securejoin"
    asm = by_name["asm-to-self"]
    assert check_outgoing(asm.data, SENDER, [SENDER]).kind == "autocrypt-setup"
    md = by_name["mailer-daemon"]
    assert check_incoming(md.data, md.mail_from, [RECIPIENT]).kind == "mailer-daemon"


def _encrypted(sender: str = SENDER) -> bytes:
    return pgp_mime(pgpy_armor(encrypted_to(keys()[1])), sender=sender)


def test_outgoing_from_must_match_envelope() -> None:
    forged = _encrypted("someone@example.org")
    decision = check_outgoing(forged, SENDER, [RECIPIENT])
    assert str(decision.reply) == f"500 5.7.1 Invalid FROM <someone@example.org> for <{SENDER}>"
    # case does not matter
    assert check_outgoing(_encrypted(SENDER.upper()), SENDER, [RECIPIENT]).accepted


def test_missing_or_ambiguous_from_header() -> None:
    message = _encrypted().replace(f"From: <{SENDER}>\r\n".encode(), b"From: nobody\r\n")
    assert (
        str(check_outgoing(message, SENDER, [RECIPIENT]).reply)
        == "500 5.6.0 Invalid FROM header: nobody"
    )
    two = _encrypted().replace(b"From:", b"From: <x@y>\r\nFrom:", 1)
    assert str(check_incoming(two, SENDER, [RECIPIENT]).reply).startswith(
        "500 5.6.0 Invalid FROM header"
    )


def test_incoming_forged_envelope_is_reset_not_refused() -> None:
    decision = check_incoming(_encrypted(), "other@remote.example", [RECIPIENT])
    assert decision.accepted and decision.mail_from == ""
    decision = check_incoming(_encrypted(), SENDER, [RECIPIENT])
    assert decision.accepted and decision.mail_from == SENDER


def test_no_headers_at_all() -> None:
    decision = check_outgoing(b"\r\njust a body\r\n", SENDER, [RECIPIENT])
    assert str(decision.reply).startswith("500 5.6.0 Failed to parse message")
