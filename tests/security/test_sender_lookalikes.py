"""A logged-in user sends only as exactly their login: no look-alike by Unicode case folding."""

from __future__ import annotations

import smtplib

from tests.helpers import RelayServer
from tests.smtp.session_helpers import create_accounts, encrypted, in_thread, inbox, logged_in

KELVIN = "\u212a"  # KELVIN SIGN: "\u212a".lower() == "k"


async def test_envelope_sender_with_a_case_folding_look_alike_is_refused(
    relay_server: RelayServer,
) -> None:
    kate, bob = await create_accounts(relay_server, "kate00001", "bob000001")
    look_alike = KELVIN + kate[1:]

    def run() -> tuple[int, bytes]:
        with logged_in(relay_server, "kate00001") as client:
            client.ehlo()
            assert client.mail(look_alike, ["SMTPUTF8"])[0] == 250
            return client.rcpt(bob)

    code, text = await in_thread(run)
    assert code == 553 and b"Sender address rejected" in text
    assert await inbox(relay_server, bob) == []


async def test_from_header_with_a_case_folding_look_alike_is_refused(
    relay_server: RelayServer,
) -> None:
    kate, bob = await create_accounts(relay_server, "kate00001", "bob000001")
    message = encrypted(KELVIN + kate[1:])

    def run() -> tuple[int, bytes]:
        with logged_in(relay_server, "kate00001") as client:
            try:
                client.sendmail(kate, [bob], message, mail_options=["SMTPUTF8"])
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error
        return 250, b""

    code, text = await in_thread(run)
    assert code == 500 and text.startswith(b"5.7.1 Invalid FROM")
    assert await inbox(relay_server, bob) == []
