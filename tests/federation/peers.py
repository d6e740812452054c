"""Peers for federation tests: a /mxdeliv HTTPS server, an SMTP MX with STARTTLS, a DNS server.

They run in the test's trio loop on a loopback address of their own, record what they got,
and answer what the test tells them to.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import h11
import trio

from relay.smtp.engine import SMTPEngine
from relay.smtp.events import NEED_DATA, Closed, MailFrom, MessageData, RcptTo, StartTLS
from relay.tls import make_self_signed, server_context, write_pair


def self_signed_context(tmp: Path, name: str) -> ssl.SSLContext:
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    write_pair(cert, key, *make_self_signed(name))
    return server_context(cert, key)


async def _serve(host: str, handler, nursery: trio.Nursery, port: int = 0) -> int:
    listeners = await trio.open_tcp_listeners(port, host=host)
    nursery.start_soon(trio.serve_listeners, handler, listeners)
    return listeners[0].socket.getsockname()[1]


@dataclass
class Posted:
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]


@dataclass
class MxdelivPeer:
    """HTTPS; every POST is recorded and answered with `answer` (status, body)."""

    ctx: ssl.SSLContext
    answer: tuple[int, bytes] = (200, b"250 OK")
    posts: list[Posted] = field(default_factory=list)
    delay: float = 0.0
    hold: trio.Event | None = None  # if given, every answer waits until it is set
    port: int = 0

    async def start(self, host: str, nursery: trio.Nursery, port: int = 0) -> int:
        self.port = await _serve(host, self._connection, nursery, port)
        return self.port

    async def _connection(self, stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, self.ctx, server_side=True)
        conn = h11.Connection(h11.SERVER)
        request, body = None, bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await tls.receive_some(65536))
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            headers = [(k.decode().lower(), v.decode()) for k, v in request.headers]
            self.posts.append(Posted(headers, bytes(body)))
            await trio.sleep(self.delay)
            if self.hold is not None:
                await self.hold.wait()
            status, text = self.answer
            response = h11.Response(
                status_code=status, headers=[("Content-Length", str(len(text)))]
            )
            await tls.send_all(
                conn.send(response) + conn.send(h11.Data(data=text)) + conn.send(h11.EndOfMessage())
            )
        except (trio.BrokenResourceError, h11.ProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(tls)


@dataclass
class Received:
    sender: str
    recipients: tuple[str, ...]
    content: bytes
    tls: bool


@dataclass
class SMTPPeer:
    """An MX speaking ESMTP with STARTTLS; `refuse(addr)` gives a RCPT reply or None."""

    ctx: ssl.SSLContext
    refuse: Callable[[str], tuple[int, str] | None] = lambda addr: None
    offer_tls: bool = True
    messages: list[Received] = field(default_factory=list)
    port: int = 0

    async def start(self, host: str, nursery: trio.Nursery, port: int = 0) -> int:
        self.port = await _serve(host, self._connection, nursery, port)
        return self.port

    async def _connection(self, stream: trio.abc.Stream) -> None:
        engine = SMTPEngine(
            "peer.test",
            max_message_size=1 << 24,
            starttls=self.offer_tls,
            offer_auth=False,
            require_auth=False,
        )
        tls = False
        try:
            while True:
                event = engine.next_event()
                out = engine.data_to_send()
                if out:
                    await stream.send_all(out)
                if event is NEED_DATA:
                    engine.receive_data(await stream.receive_some(65536))
                elif isinstance(event, StartTLS):
                    stream = trio.SSLStream(stream, self.ctx, server_side=True)
                    await stream.do_handshake()
                    engine.tls_started()
                    tls = True
                elif isinstance(event, MailFrom):
                    engine.accept()
                elif isinstance(event, RcptTo):
                    refusal = self.refuse(event.address)
                    if refusal:
                        engine.reject(*refusal)
                    else:
                        engine.accept()
                elif isinstance(event, MessageData):
                    self.messages.append(
                        Received(event.sender, event.recipients, event.content, tls)
                    )
                    engine.accept()
                elif isinstance(event, Closed):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


@dataclass
class HandMadeDNS:
    """A hand-made DNS responder (dnspython, in the test's trio loop), not a DNS server:
    answers from `records` {(name, type): [rdata text]}, NXDOMAIN otherwise, SERVFAIL for the
    names in `failing` (names end without a dot). For faults on demand; the interop tests use
    dnsmasq (tests/federation/dnsmasq.py)."""

    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    address: str = ""

    async def start(self, host: str, nursery: trio.Nursery) -> str:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.bind((host, 0))
        self.address = f"{host}:{sock.getsockname()[1]}"
        nursery.start_soon(self._serve, sock)
        return self.address

    async def _serve(self, sock: trio.socket.SocketType) -> None:
        with sock:
            while True:
                data, peer = await sock.recvfrom(4096)
                query = dns.message.from_wire(data)
                response = dns.message.make_response(query)
                response.flags |= dns.flags.AA
                question = query.question[0]
                name = question.name.to_text(omit_final_dot=True).lower()
                rdtype = dns.rdatatype.to_text(question.rdtype)
                if name in self.failing:
                    response.set_rcode(dns.rcode.SERVFAIL)
                elif (name, rdtype) in self.records:
                    response.answer.append(
                        dns.rrset.from_text_list(
                            question.name, 300, "IN", rdtype, self.records[(name, rdtype)]
                        )
                    )
                elif not any(key[0] == name for key in self.records):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                await sock.sendto(response.to_wire(), peer)
