"""A recipient that fails after others succeeded is reported to the sender, not dropped."""

from __future__ import annotations

from tests.helpers import RelayServer
from tests.smtp.session_helpers import create_accounts, encrypted, in_thread, inbox, logged_in


async def test_the_sender_gets_a_report_for_the_recipient_that_failed(
    relay_server: RelayServer,
) -> None:
    alice, bob, carol = await create_accounts(relay_server, "alice0001", "bob000001", "carol0001")
    smtp = await in_thread(lambda: logged_in(relay_server, "alice0001"))
    try:
        await in_thread(lambda: smtp.mail(alice))
        assert (await in_thread(lambda: smtp.rcpt(bob)))[0] == 250
        assert (await in_thread(lambda: smtp.rcpt(carol)))[0] == 250
        await relay_server.app.store.delete_account(carol)  # gone between RCPT and DATA
        code, _ = await in_thread(lambda: smtp.data(encrypted(alice)))
    finally:
        await in_thread(smtp.quit)
    assert code == 250
    assert len(await inbox(relay_server, bob)) == 1
    [report] = await inbox(relay_server, alice)
    assert b"multipart/report" in report and b"Auto-Submitted: auto-replied" in report
    assert f"Final-Recipient: rfc822; {carol}".encode() in report
    assert b"Status: 5.1.1" in report
