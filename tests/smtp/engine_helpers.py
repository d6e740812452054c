"""Drive the sans-IO engine with byte scripts (no sockets)."""

from __future__ import annotations

import base64
from collections.abc import Callable

from relay.smtp.engine import SMTPEngine
from relay.smtp.events import NEED_DATA, Closed, Event, StartTLS

Decider = Callable[[SMTPEngine, Event], None]


def accept_all(engine: SMTPEngine, event: Event) -> None:
    engine.accept()


def make_engine(**kwargs: object) -> SMTPEngine:
    options: dict = {"max_message_size": 10_000, "tls_active": True}
    options.update(kwargs)
    engine = SMTPEngine("relay.test", **options)
    engine.data_to_send()  # drop the greeting
    return engine


def pump(engine: SMTPEngine, data: bytes, decide: Decider = accept_all) -> list[Event]:
    """Feed bytes and run until the engine needs more; decisions go through `decide`."""
    engine.receive_data(data)
    events: list[Event] = []
    while True:
        event = engine.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
        if isinstance(event, Closed | StartTLS):
            return events
        if engine.state.name == "DECIDING":
            decide(engine, event)


def codes(out: bytes) -> list[int]:
    """Final reply codes in the output (multi-line replies count once)."""
    return [int(line[:3]) for line in out.split(b"\r\n") if len(line) >= 4 and line[3:4] == b" "]


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def transaction(body: bytes = b"Subject: x\r\n\r\nhi\r\n") -> bytes:
    return b"MAIL FROM:<a@relay.test>\r\nRCPT TO:<b@relay.test>\r\nDATA\r\n" + body + b".\r\n"


def authed_engine(**kwargs: object) -> SMTPEngine:
    engine = make_engine(**kwargs)
    pump(engine, f"EHLO c\r\nAUTH PLAIN {plain('a@relay.test', 'pw')}\r\n".encode())
    engine.data_to_send()
    return engine
