"""One SMTP connection: reads bytes, feeds the engine, applies the relay's policy, delivers.

Three listeners share this code:
- "submissions" (465, implicit TLS) and "submission" (587, STARTTLS required before AUTH):
  clients must log in (JIT account creation); the envelope sender must be the login; mail must
  be encrypted; the sender's rate is limited.
- "smtp" (25, MX): other relays deliver to our users; no AUTH, local recipients only, the same
  encryption gate for incoming mail, unknown users refused at RCPT.
The reply strings are the official chatmail relay's, so its tests and clients see the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from relay.delivery import deliver
from relay.federation.origin import origin_check
from relay.policy.checks import check_incoming, check_outgoing
from relay.policy.headers import clean_submitted
from relay.ratelimit import TooManyFailures
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
from relay.smtp.limits import limits_for

if TYPE_CHECKING:
    from relay.app import App
    from relay.server import Peer

PRE_AUTH_TIMEOUT = 60.0  # seconds for a whole command before a submission client logs in
IDLE_TIMEOUT = 300.0  # RFC 5321 4.5.3.2: five minutes per command or data block
MIN_DATA_RATE = 1024  # bytes per second a DATA section must average beyond IDLE_TIMEOUT
TLS_HANDSHAKE_TIMEOUT = 15.0
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
        self.limits = limits_for(app)
        self.login: str | None = None
        self.rate_refusal: str | None = None  # decided once per transaction, at the first RCPT
        self.rate_checked = False
        self.body_bytes = 0  # charged to app.body_budget for the DATA being received
        # Each command must arrive whole before this moment: a deadline per command, not per
        # read, so a client trickling a byte now and then (slowloris) is still cut off.
        self.deadline = trio.current_time() + self.timeout
        limits = app.config.limits
        self.engine = SMTPEngine(
            app.config.mail_domain,
            max_message_size=limits.max_message_size,
            max_recipients=limits.max_recipients,
            tls_active=service == "submissions",
            starttls=service != "submissions",
            offer_auth=self.submission,
            require_auth=self.submission,
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
        with trio.move_on_at(self.deadline):
            data = await self.stream.receive_some(READ_SIZE)
            if self.engine.state is State.DATA:
                # A large message on a slow link may take longer, as long as it keeps moving.
                self.deadline += len(data) / MIN_DATA_RATE
                if not self.app.body_budget.take(len(data)):
                    self.app.log.warning(
                        "smtp-memory-budget-exhausted", ip=self.app.log.redact(self.peer.ip)
                    )
                    self.engine.shutdown("4.3.1 Insufficient system resources, try again later")
                    await self._flush()
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
                self.deadline = trio.current_time() + self.timeout
                return
            raise _Hangup

    async def _start_tls(self) -> None:
        await self._flush()
        tls = trio.SSLStream(self.stream, self.app.tls.context, server_side=True)
        with trio.move_on_after(TLS_HANDSHAKE_TIMEOUT):
            await tls.do_handshake()
            self.stream = tls
            self.engine.tls_started()
            return
        raise _Hangup

    # ---- policy -----------------------------------------------------------------------------

    async def _auth(self, event: AuthAttempt) -> None:
        account = event.username.lower()
        throttle = self.app.auth_throttle
        try:
            await throttle.before_attempt(self.peer.ip, account)
        except TooManyFailures:
            self.engine.reject(454, "4.7.0 Temporary authentication failure: too many failures")
            return
        result = await self.app.store.login(account, event.password, create=True)
        if not result.ok:
            throttle.record_failure(self.peer.ip, account)
            self.app.log.info(
                "smtp-auth-failed",
                ip=self.app.log.redact(self.peer.ip),
                account=self.app.log.redact(account),
                reason=result.reason,
            )
            self.engine.reject(535, "5.7.8 Error: authentication failed: authentication failure")
            return
        throttle.record_success(self.peer.ip, account)
        if result.created:
            self.app.log.info("account-created", account=self.app.log.redact(account))
        self.login = account
        self.engine.accept()

    def _mail_from(self, event: MailFrom) -> None:
        self.rate_checked, self.rate_refusal = False, None
        address = event.address
        if self.submission and address.count("@") != 1:
            self.engine.reject(500, f"Invalid from address <{address}>")
        elif not self.submission and address and not _is_mailbox(address):
            self.engine.reject(501, "5.1.7 Bad sender address syntax")
        else:
            self.engine.accept()

    async def _rcpt_to(self, event: RcptTo) -> None:
        rcpt, sender = event.address, self.engine.mail_from or ""
        if not _is_mailbox(rcpt):
            self.engine.reject(501, "5.1.3 Bad recipient address syntax")
            return
        if self.submission:
            # ASCII only: str.lower() folds some non-ASCII letters to ASCII ones (the Kelvin
            # sign to "k"), which would let a user send as a look-alike of the login.
            if not sender.isascii() or sender.lower() != self.login:
                self.engine.reject(
                    553,
                    f"5.7.1 <{sender}>: Sender address rejected: not owned by user {self.login}",
                )
                return
            refusal = self._rate_refusal(sender)
            if refusal:
                self.engine.reject(450, refusal)
                return
        elif not self.app.config.is_local_address(rcpt):
            self.engine.reject(554, f"5.7.1 <{rcpt}>: Relay access denied")
            return
        is_local = self.app.config.is_local_address(rcpt)
        if is_local and not await self.app.store.account_exists(rcpt):
            self.engine.reject(550, f"5.1.1 <{rcpt}>: Recipient address rejected: User unknown")
            return
        self.engine.accept()

    def _rate_refusal(self, sender: str) -> str | None:
        if not self.rate_checked:
            self.rate_checked = True
            limiter = self.limits.send_limiter(self.app)
            key = sender.lower()
            if not limiter.allow(key):
                wait = max(1, round(limiter.retry_after(key)))
                self.rate_refusal = (
                    f"4.7.1: Too much mail from <{sender}>, rate limited for {wait} s"
                )
                self.app.log.info("smtp-rate-limited", sender=self.app.log.redact(sender))
        return self.rate_refusal

    async def _message(self, event: MessageData) -> None:
        content = event.content
        recipients = list(event.recipients)
        check = check_outgoing if self.submission else check_incoming
        decision = check(content, event.sender, recipients)
        log = self.app.log
        direction = "outgoing" if self.submission else "incoming"
        refusal = decision.reply
        if refusal is None and not self.submission:
            refusal = await origin_check(self.app, content, event.sender)
        if refusal is not None:
            log.info(
                "smtp-rejected",
                direction=direction,
                sender=log.redact(event.sender),
                reply=refusal[:80],
                detail=decision.detail,
            )
            self.engine.reject(int(refusal[:3]), refusal[4:])
            return
        if self.submission:
            content = clean_submitted(content)
        try:
            result = await deliver(self.app, decision.mail_from, recipients, content)
        except Exception as e:  # a storage failure must become a temporary error, never a 250
            log.error("smtp-delivery-failed", error=repr(e))
            self.engine.reject(451, "4.3.0 Error: queue file write error")
            return
        for rcpt, reply in result.failed.items():
            log.warning("smtp-recipient-failed", recipient=log.redact(rcpt), reply=reply)
        if not result.accepted:
            reply = next(iter(result.failed.values()))
            self.engine.reject(int(reply[:3]), reply[4:])
            return
        log.info(
            "smtp-accepted",
            direction=direction,
            kind=decision.kind,
            sender=log.redact(event.sender),
            local=len(result.delivered),
            queued=len(result.queued),
            size=len(content),
        )
        suffix = f" as {result.queue_id}" if result.queue_id else ""
        self.engine.accept(f"2.0.0 Ok: queued{suffix}")


def _is_mailbox(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain) and "@" not in local


async def handle(stream: trio.abc.Stream, peer: Peer, app: App, *, service: str) -> None:
    limits = limits_for(app)
    cap = app.config.limits.max_connections_per_ip
    with limits.connections.holding(peer.ip, cap) as admitted:
        if not admitted:
            app.log.warning("smtp-too-many-connections", ip=app.log.redact(peer.ip))
            with trio.move_on_after(5):
                await stream.send_all(
                    b"421 4.7.0 Error: too many connections from your address\r\n"
                )
            return
        await Session(stream, peer, app, service).run()
