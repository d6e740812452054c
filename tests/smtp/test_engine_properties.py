"""Property tests: arbitrary bytes and chunkings never crash the engine or end DATA early."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.smtp.dataframe import TERMINATOR
from relay.smtp.engine import MAX_COMMAND_LINE
from relay.smtp.events import MessageData
from tests.smtp.engine_helpers import authed_engine, codes, make_engine, pump

SMTP_WORDS = [
    b"EHLO x\r\n",
    b"HELO x\r\n",
    b"MAIL FROM:<a@relay.test>\r\n",
    b"RCPT TO:<b@relay.test>\r\n",
    b"DATA\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN\r\n",
    b"STARTTLS\r\n",
    b"RSET\r\n",
    b".\r\n",
    b"\r\n.\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b".",
    b"x" * 1200,
]
chunks_of_noise = st.lists(
    st.one_of(st.binary(max_size=300), st.sampled_from(SMTP_WORDS)), max_size=40
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return [p for p in pieces if p]  # b"" would mean EOF


@SETTINGS
@given(pieces=chunks_of_noise, tls=st.booleans(), authed=st.booleans())
def test_arbitrary_bytes_never_crash(pieces: list[bytes], tls: bool, authed: bool) -> None:
    engine = authed_engine(max_message_size=2000) if authed else make_engine(tls_active=tls)
    for piece in pieces:
        events = pump(engine, piece)
        engine.data_to_send()
        if events and type(events[-1]).__name__ in ("Closed", "StartTLS"):
            if engine.state.name == "TLS_HANDSHAKE":
                engine.tls_started()
                continue
            return
        # bounded memory: a command line never accumulates past the cap, DATA past the limit
        assert len(engine._in) <= MAX_COMMAND_LINE + len(piece)
        if engine._data is not None:
            assert len(engine._data._buf) <= 2000 + len(piece) + 8
    pump(engine, b"")
    assert engine.state.name == "CLOSED"


body_bytes = st.lists(
    st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"a", b"\r\n.", b"\r\n..", b"\n.\n", b"\r.\r"]),
    max_size=60,
).map(b"".join)


@SETTINGS
@given(body=body_bytes, cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_data_ends_only_at_crlf_dot_crlf(body: bytes, cuts: list[int]) -> None:
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    while TERMINATOR in b"\r\n" + body:  # dot-stuff, as a client would
        body = (b"\r\n" + body).replace(TERMINATOR, b"\r\n..\r\n")[2:]
    engine = authed_engine()
    script = b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n" + body + b".\r\nNOOP\r\n"
    messages = []
    for chunk in _split(script, cuts):
        messages += [e for e in pump(engine, chunk) if isinstance(e, MessageData)]
    replies = codes(engine.data_to_send())
    # Exactly one reply for the DATA section, then the NOOP: DATA did not end anywhere else.
    assert replies[:3] == [250, 250, 354]
    assert replies[4:] == [250], replies
    crlf = body.count(b"\r\n")
    well_formed = body.count(b"\r") == crlf == body.count(b"\n")
    if well_formed:
        assert replies[3] == 250
        assert [m.transmission for m in messages] == [body]
    else:
        assert replies[3] == 500
        assert messages == []
