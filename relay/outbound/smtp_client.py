"""The SMTP fallback: one transaction to a peer's port 25, STARTTLS required.

Each recipient gets its own reply, so a peer that refuses one recipient does not hold up the
others. Any failure to talk to the peer at all raises TransportError (try the next exchanger).
"""

from __future__ import annotations

import contextlib
import ssl
from collections import deque

import trio

from relay.outbound.connect import TransportError, open_connection, start_tls
from relay.outbound.smtp_reply import PeerReply, ReplyError, ReplyReader
from relay.smtp.events import stuff

REPLY_TIMEOUT = 300.0  # RFC 5321 4.5.3.2 asks for minutes; a slow peer is not a dead one
DATA_TIMEOUT = 600.0
PLAINTEXT_DOMAINS = frozenset({"nauta.cu"})  # reached without TLS, as the official relay does


class _Conversation:
    def __init__(self, stream: trio.abc.Stream, peer: str):
        self.stream = stream
        self.peer = peer
        self.reader = ReplyReader()
        self.replies: deque[PeerReply] = deque()
        self.extensions: set[str] = set()  # EHLO keywords, after STARTTLS when there was one

    async def reply(self, timeout: float = REPLY_TIMEOUT) -> PeerReply:
        with trio.move_on_after(timeout):
            while not self.replies:
                data = await self.stream.receive_some(4096)
                if not data:
                    raise TransportError(f"SMTP to {self.peer}: connection closed")
                self.replies.extend(self.reader.feed(data))
            return self.replies.popleft()
        raise TransportError(f"SMTP to {self.peer}: no reply within {timeout:.0f} s")

    async def send(self, *lines: str) -> None:
        await self.stream.send_all("".join(f"{line}\r\n" for line in lines).encode())

    async def command(self, line: str) -> PeerReply:
        await self.send(line)
        return await self.reply()


async def send_smtp(
    addresses: tuple[str, ...],
    port: int,
    host: str,
    ctx: ssl.SSLContext | None,
    helo: str,
    sender: str,
    recipients: list[str],
    message: bytes,
) -> dict[str, str]:
    """Deliver `message` (CRLF lines); returns each recipient's reply line. ctx None = no TLS."""
    stream: trio.abc.Stream = await open_connection(addresses, port)
    try:
        conv = _Conversation(stream, host)
        try:
            conv = await _hello(conv, host, ctx, helo)
            return await _transaction(conv, sender, recipients, message)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ReplyError) as e:
            raise TransportError(f"SMTP to {host}: {e or type(e).__name__}") from None
    finally:
        await trio.aclose_forcefully(conv.stream)


async def _hello(
    conv: _Conversation, host: str, ctx: ssl.SSLContext | None, helo: str
) -> _Conversation:
    greeting = await conv.reply()
    if greeting.code != 220:
        raise TransportError(f"SMTP to {host}: greeting {greeting.line()}")
    ehlo = await conv.command(f"EHLO {helo}")
    if ehlo.code != 250:
        raise TransportError(f"SMTP to {host}: EHLO answered {ehlo.line()}")
    if ctx is None:
        conv.extensions = ehlo.keywords()
        return conv
    if "STARTTLS" not in ehlo.keywords():
        raise TransportError(f"SMTP to {host}: STARTTLS not offered")
    answer = await conv.command("STARTTLS")
    if answer.code != 220:
        raise TransportError(f"SMTP to {host}: STARTTLS answered {answer.line()}")
    secure = _Conversation(await start_tls(conv.stream, ctx, host), host)
    ehlo = await secure.command(f"EHLO {helo}")
    if ehlo.code != 250:
        raise TransportError(f"SMTP to {host}: EHLO after STARTTLS answered {ehlo.line()}")
    secure.extensions = ehlo.keywords()
    return secure


async def _transaction(
    conv: _Conversation, sender: str, recipients: list[str], message: bytes
) -> dict[str, str]:
    mail = f"MAIL FROM:<{sender}>" + (" BODY=8BITMIME" if "8BITMIME" in conv.extensions else "")
    rcpts = [f"RCPT TO:<{rcpt}>" for rcpt in recipients]
    if "PIPELINING" in conv.extensions:
        await conv.send(mail, *rcpts)
        replies = [await conv.reply() for _ in range(1 + len(rcpts))]
    else:
        replies = [await conv.command(mail)]
        if replies[0].ok:
            replies += [await conv.command(line) for line in rcpts]
    if not replies[0].ok:
        await _quit(conv)
        return {rcpt: replies[0].line() for rcpt in recipients}
    results = {rcpt: reply.line() for rcpt, reply in zip(recipients, replies[1:], strict=True)}
    accepted = [rcpt for rcpt, reply in zip(recipients, replies[1:], strict=True) if reply.ok]
    if not accepted:
        await _quit(conv)
        return results
    final = await conv.command("DATA")
    if final.code == 354:
        await conv.stream.send_all(stuff(message) + b".\r\n")
        final = await conv.reply(DATA_TIMEOUT)
    for rcpt in accepted:
        results[rcpt] = final.line()
    await _quit(conv)
    return results


async def _quit(conv: _Conversation) -> None:
    # The transaction is already decided; a peer that hangs up early changes nothing.
    quiet = (TransportError, trio.BrokenResourceError, trio.ClosedResourceError, ReplyError)
    with trio.move_on_after(5), contextlib.suppress(*quiet):
        await conv.command("QUIT")
