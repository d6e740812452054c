"""One SMTP connection: reads bytes, feeds the engine, applies the relay's policy, delivers.

Three listeners share this code:
- "submissions" (465, implicit TLS) and "submission" (587, STARTTLS required before AUTH):
  clients must log in (JIT account creation); the envelope sender must be the login; mail must
  be encrypted; the sender's rate is limited.
- "smtp" (25, MX): other relays deliver to our users; no AUTH, local recipients only, the same
  encryption gate for incoming mail, unknown users refused at RCPT.
The reply strings are the official chatmail relay's, so its tests and clients see the same, each
with its enhanced status code (RFC 3463) after the reply code, after HELO as after EHLO; where the
official relay's filter sends a line without one, the code is added and the text kept (the rule
is in relay.reply; the engine refuses a 2xx/4xx/5xx line without a code).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from relay.core import inbound, submission
from relay.core.accounts import authenticate
from relay.net import Deadline, Peer, close_after_refusal, tls_handshake
from relay.reply import Reply
from relay.smtp.engine import SMTPEngine, State
from relay.smtp.events import (
    NEED_DATA,
    AuthAttempt,
    Closed,
    MailFrom,
    MessageData,
    RcptTo,
    StartTLS,
)

if TYPE_CHECKING:
    from relay.app import App

PRE_AUTH_TIMEOUT = 60.0  # seconds for a whole command before a submission client logs in
IDLE_TIMEOUT = 300.0  # RFC 5321 4.5.3.2: five minutes per command or data block
MIN_DATA_RATE = 1024  # bytes per second a DATA section must average ...
DATA_GRACE = 30.0  # ... from this many seconds after the 354 (a trickled body is cut off early)
READ_SIZE = 65536


class _Hangup(Exception):
    """The session ends now (timeout or a closed engine); the server closes the stream."""


class Session:
    def __init__(self, stream: trio.abc.Stream, peer: Peer, app: App, service: str):
        self.stream = stream
        self.peer = peer
        self.app = app
        self.service = service
        self.submission = service != "smtp"
        self.login: str | None = None
        self.envelope_refusal: Reply | None = None  # decided once per transaction, first RCPT
        self.envelope_checked = False
        self.body_bytes = 0  # charged to app.body_budget for the DATA being received
        # Each command must arrive whole before this moment: a deadline per command, not per
        # read, so a client trickling a byte now and then (slowloris) is still cut off.
        self.deadline = Deadline(self.timeout, min_rate=MIN_DATA_RATE)
        limits = app.config.limits
        self.engine = SMTPEngine(
            app.config.mail_domain,
            max_message_size=limits.max_message_size,
            max_recipients=limits.max_recipients,
            tls_active=service == "submissions",
            starttls=service != "submissions",
            offer_auth=self.submission,
            require_auth=self.submission,
            require_tls=service == "smtp",  # other relays too: the official relay's "encrypt"
        )

    @property
    def timeout(self) -> float:
        return PRE_AUTH_TIMEOUT if self.submission and self.login is None else IDLE_TIMEOUT

    async def run(self) -> None:
        try:
            while True:
                event = self.engine.next_event()
                if event is NEED_DATA:
                    await self._flush()
                    await self._receive()
                elif isinstance(event, Closed):
                    await self._flush()
                    await self._close()
                    return
                elif isinstance(event, StartTLS):
                    await self._start_tls()
                elif isinstance(event, AuthAttempt):
                    await self._auth(event)
                elif isinstance(event, MailFrom):
                    self._mail_from(event)
                elif isinstance(event, RcptTo):
                    await self._rcpt_to(event)
                elif isinstance(event, MessageData):
                    try:
                        await self._message(event)
                    finally:
                        self._give_back_body()
        except _Hangup:
            await self._close()
        finally:
            self._give_back_body()

    def _give_back_body(self) -> None:
        self.app.body_budget.give_back(self.body_bytes)
        self.body_bytes = 0

    async def _close(self) -> None:
        # A clean close (TLS close_notify) tells the client the conversation ended on purpose.
        with trio.move_on_after(1):
            await self.stream.aclose()

    # ---- I/O --------------------------------------------------------------------------------

    async def _receive(self) -> None:
        if self.engine.state is State.DATA:
            self.deadline.start_bulk(DATA_GRACE)
        with trio.move_on_at(self.deadline.at):
            data = await self.stream.receive_some(READ_SIZE)
            if self.engine.state is State.DATA:
                # A large message on a slow link may take longer, as long as it keeps moving.
                self.deadline.extend_for(len(data))
                if not self.app.body_budget.take(len(data)):
                    self.app.log.warning(
                        "smtp-memory-budget-exhausted", ip=self.app.log.redact(self.peer.ip)
                    )
                    self.engine.shutdown("4.3.1 Insufficient system resources, try again later")
                    await self._flush()
                    await close_after_refusal(self.stream)
                    raise _Hangup
                self.body_bytes += len(data)
            self.engine.receive_data(data)
            return
        self.engine.shutdown(f"4.4.2 {self.app.config.mail_domain} Error: timeout exceeded")
        await self._flush()
        raise _Hangup

    async def _flush(self) -> None:
        data = self.engine.data_to_send()
        if data:
            with trio.move_on_after(IDLE_TIMEOUT):
                await self.stream.send_all(data)
                # A reply means a command was complete: the clock starts again for the next.
                self.deadline.restart(self.timeout)
                return
            raise _Hangup

    async def _start_tls(self) -> None:
        await self._flush()
        tls = await tls_handshake(self.stream, self.app.tls.context)
        if tls is None:
            raise _Hangup
        self.stream = tls
        self.engine.tls_started()

    # ---- policy -----------------------------------------------------------------------------

    async def _auth(self, event: AuthAttempt) -> None:
        outcome = await authenticate(
            self.app, self.peer.ip, event.username, event.password, via=self.service
        )
        if outcome.verdict == "throttled":
            self.engine.reject(454, "4.7.0 Temporary authentication failure: too many failures")
        elif outcome.verdict == "unavailable":
            self.engine.reject(454, "4.3.1 Insufficient system storage")
        elif not outcome.ok:
            self.engine.reject(535, "5.7.8 Error: authentication failed: authentication failure")
        else:
            self.login = outcome.addr
            self.engine.accept()

    def _reject(self, reply: Reply) -> None:
        self.engine.reject(reply.code, reply.after_code)

    def _mail_from(self, event: MailFrom) -> None:
        self.envelope_checked, self.envelope_refusal = False, None
        address = event.address
        if self.submission and address.count("@") != 1:
            self.engine.reject(500, f"5.1.7 Invalid from address <{address}>")
        elif not self.submission and (refusal := inbound.sender_refusal(address)):
            self._reject(refusal)
        else:
            self.engine.accept()

    async def _rcpt_to(self, event: RcptTo) -> None:
        rcpt = event.address
        if self.submission:
            refusal = None if inbound.is_mailbox(rcpt) else inbound.BAD_RECIPIENT
            refusal = refusal or self._envelope_refusal()
        else:
            refusal = inbound.recipient_refusal(self.app, rcpt)
        if refusal is None and self.app.config.is_local_address(rcpt):
            refusal = await inbound.unknown_recipient(self.app, rcpt)
        if refusal is not None:
            self._reject(refusal)
        else:
            self.engine.accept()

    def _envelope_refusal(self) -> Reply | None:
        """Sender = login and the sender's rate, decided once per transaction (first RCPT)."""
        if not self.envelope_checked:
            self.envelope_checked = True
            assert self.login is not None  # the engine requires AUTH before MAIL here
            sender = self.engine.mail_from or ""
            self.envelope_refusal = submission.envelope_refusal(self.app, self.login, sender)
        return self.envelope_refusal

    async def _message(self, event: MessageData) -> None:
        recipients = list(event.recipients)
        if self.submission:
            reply = (
                await submission.submit(self.app, event.sender, recipients, event.content)
            ).reply
        else:
            reply = (
                await inbound.accept_incoming(self.app, event.sender, recipients, event.content)
            ).reply
        if reply.accepted:
            self.engine.accept(reply.after_code)
        else:
            self._reject(reply)


TOO_MANY_CONNECTIONS = b"421 4.7.0 Error: too many connections from your address\r\n"


async def handle(stream: trio.abc.Stream, peer: Peer, app: App, service: str) -> None:
    await Session(stream, peer, app, service).run()
