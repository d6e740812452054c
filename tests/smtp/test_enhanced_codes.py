"""Every reply the SMTP side gives carries an RFC 3463 enhanced status code (RFC 2034).

Real connections to a relay drive the engine, the session and the gates (AUTH, the envelope
rules, the PGP gate, the origin check, storage) through their error paths on the submission
ports (465, 587) and on port 25. Each scenario checks its last reply exactly; on top of that,
every 2xx, 4xx and 5xx line of every conversation must carry the code, of the reply's class,
right after the reply code. Only the greeting and the 250 answers to EHLO/HELO are exempt, as in
RFC 2034. The rule is the same after HELO as after EHLO (Postfix, in front of the official relay,
also sends the same lines either way), so every table runs under both greetings.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import trio

from relay.config import Config
from relay.core import submission
from relay.policy import origin
from relay.reply import Reply
from relay.smtp import engine as engine_mod
from relay.smtp import session
from relay.smtp.events import stuff
from relay.store import DeliveryOutcome, QuotaExceeded
from relay.store.types import StoreError
from tests.helpers import RelayServer
from tests.smtp.engine_helpers import make_engine, plain, pump
from tests.smtp.session_helpers import PASSWORD, create_accounts, encrypted
from tests.smtp.session_helpers import plain as plain_message

# The reply code, then an enhanced status code of the same class (RFC 3463), then a space, the
# end of the line, or the colon of filtermail's "450 4.7.1: Too much mail from" (kept verbatim).
STATUS_LINE = re.compile(rb"([245])\d\d[ -]\1\.\d{1,3}\.\d{1,3}(?:[ :]|$)")
WAIT = b""  # in a script: send nothing, read the next reply (the server speaks on its own)
HELLOS = ("EHLO client.example", "HELO client.example")


@pytest.fixture
def relay_config(relay_config: Config) -> Config:
    limits = dataclasses.replace(
        relay_config.limits,
        max_recipients=2,
        max_message_size=20_000,
        max_user_send_per_minute=1000,  # the rate limit has its own scenario
        max_user_send_burst_size=1000,
    )
    federation = dataclasses.replace(relay_config.federation, policy_domains=["blocked.example"])
    return dataclasses.replace(relay_config, limits=limits, federation=federation)


class Wire:
    """One client connection. Every reply line it reads is kept in `checked`, except those RFC
    2034 exempts (the greeting, the 250 answer to EHLO/HELO)."""

    def __init__(self, stream: trio.abc.Stream, checked: list[bytes]) -> None:
        self.stream = stream
        self.checked = checked
        self.buf = b""

    async def reply(self, exempt: bool = False) -> bytes:
        """Read one whole reply; its last line."""
        lines: list[bytes] = []
        while not lines or lines[-1][3:4] == b"-":
            while b"\r\n" not in self.buf:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    raise EOFError(f"closed by the server after {lines}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
        if not (exempt and lines[-1].startswith(b"2")):
            self.checked.extend(lines)
        return lines[-1]

    async def send(self, data: str | bytes) -> bytes:
        """Send a command (a str, CRLF added) or raw bytes; the reply's last line."""
        raw = data.encode() + b"\r\n" if isinstance(data, str) else data
        if raw:
            await self.stream.send_all(raw)
        return await self.reply(exempt=raw[:4].upper() in (b"EHLO", b"HELO"))


async def connect(
    server: RelayServer,
    service: str,
    checked: list[bytes],
    *,
    hello: str | None,
    login: str | None = None,
    starttls: bool = True,
) -> Wire:
    tcp = await trio.open_tcp_stream(server.host, server.port(service))
    stream: trio.abc.Stream = tcp
    if service == "submissions":
        stream = trio.SSLStream(tcp, server.ssl_client_context(), server_hostname=server.host)
        await stream.do_handshake()
    wire = Wire(stream, checked)
    await wire.reply(exempt=True)  # the greeting
    if service != "submissions" and starttls:
        await wire.send("EHLO client.example")
        assert await wire.send("STARTTLS") == b"220 2.0.0 Ready to start TLS"
        wire.stream = trio.SSLStream(tcp, server.ssl_client_context(), server_hostname="x")
        await wire.stream.do_handshake()
    if hello:
        await wire.send(hello)
    if login:
        assert (await wire.send(f"AUTH PLAIN {plain(login, PASSWORD)}")).startswith(b"235 ")
    return wire


Setup = Callable[[RelayServer, pytest.MonkeyPatch], None]


@dataclass
class Scenario:
    name: str
    script: list[str | bytes]  # commands, bodies (bytes) or WAIT
    expect: str  # the last reply line, exactly; "..." at the end: a prefix
    service: str = "submissions"
    login: bool = True
    hello: bool = True
    starttls: bool = True
    setup: Setup | None = None


def data(message: bytes) -> bytes:
    return stuff(message) + b".\r\n"


def transaction(sender: str, rcpt: str, message: bytes) -> list[str | bytes]:
    return [f"MAIL FROM:<{sender}>", f"RCPT TO:<{rcpt}>", "DATA", data(message)]


async def run_table(
    server: RelayServer, monkeypatch: pytest.MonkeyPatch, scenarios: list[Scenario], hello: str
) -> None:
    """Each scenario on a fresh connection: its last reply, then every line it got."""
    checked: list[bytes] = []
    last: dict[str, bytes] = {}
    wrong = []
    for s in scenarios:
        with monkeypatch.context() as patch, trio.fail_after(20):
            if s.setup is not None:
                s.setup(server, patch)
            wire = await connect(
                server,
                s.service,
                checked,
                hello=hello if s.hello else None,
                login=LOGIN if s.login else None,
                starttls=s.starttls,
            )
            for step in s.script:
                last[s.name] = await wire.send(step)
            await wire.stream.aclose()
        expect = s.expect.encode()
        line = last[s.name]
        if not (line == expect or (expect.endswith(b"...") and line.startswith(expect[:-3]))):
            wrong.append(f"{s.name}: {line!r}, expected {expect!r}")
    assert not wrong, "\n".join(wrong)
    lacking = [
        line for line in checked if line[:1] in (b"2", b"4", b"5") and not STATUS_LINE.match(line)
    ]
    assert not lacking, lacking
    assert any(line.startswith(b"5") for line in checked)  # the check saw refusals at all


LOGIN = "alice0001@[127.0.0.1]"
BOB = "bob000001@[127.0.0.1]"
GONE = "gone00001@[127.0.0.1]"
REMOTE = "sender01@[127.0.0.9]"  # another relay's user: a literal needs no DKIM


def _fail_storage(server: RelayServer, patch: pytest.MonkeyPatch) -> None:
    async def broken(delivery: object) -> DeliveryOutcome:
        raise OSError("disk on fire")

    patch.setattr(server.app.store, "commit_delivery", broken)


def _over_quota(server: RelayServer, patch: pytest.MonkeyPatch) -> None:
    async def full(delivery: object) -> DeliveryOutcome:
        failed: dict[str, StoreError] = {BOB: QuotaExceeded(BOB)}
        return DeliveryOutcome(failed=failed)

    patch.setattr(server.app.store, "commit_delivery", full)


def _throttle_logins(server: RelayServer, patch: pytest.MonkeyPatch) -> None:
    patch.setattr(server.app.auth_throttle, "lockout_after", 0)


def _impatient(server: RelayServer, patch: pytest.MonkeyPatch) -> None:
    patch.setattr(session, "PRE_AUTH_TIMEOUT", 0.2)


def _no_dkim_keys(server: RelayServer, patch: pytest.MonkeyPatch) -> None:
    async def no_key(name: bytes, config: object) -> None:
        return None

    patch.setattr(origin.keys, "get", no_key)


def _unreadable_from(server: RelayServer, patch: pytest.MonkeyPatch) -> None:
    patch.setattr(origin, "from_domain", lambda message: None)


def _budget_spent(server: RelayServer, patch: pytest.MonkeyPatch) -> None:
    budget = server.app.body_budget
    patch.setattr(budget, "used", budget.total - 100)  # other connections hold nearly all of it


def _tight_rate(server: RelayServer, patch: pytest.MonkeyPatch) -> None:
    config = server.app.config
    limits = dataclasses.replace(
        config.limits, max_user_send_per_minute=1, max_user_send_burst_size=1
    )
    patch.setattr(server.app, "config", dataclasses.replace(config, limits=limits))


def submission_scenarios() -> list[Scenario]:
    good = encrypted(LOGIN)
    S = Scenario
    return [
        # commands the engine cannot read or does not know
        S("unknown command", ["FOO"], "500 5.5.2 Error: command not recognized"),
        S("line too long", ["NOOP " + "x" * 3000], "500 5.5.2 Error: line too long"),
        S("bad UTF-8", [b"NOOP \xff\r\n"], "500 5.5.2 Error: bad UTF-8 syntax"),
        S("EXPN", ["EXPN staff"], "502 5.5.1 Error: command not implemented"),
        S("STARTTLS under TLS", ["STARTTLS"], "554 5.5.1 Error: TLS already active"),
        S("STARTTLS argument", ["STARTTLS now"], "501 5.5.4 Syntax: STARTTLS"),
        S("EHLO without name", ["EHLO"], "501 5.5.4 Syntax: EHLO hostname"),
        S("HELO without name", ["HELO"], "501 5.5.4 Syntax: HELO hostname"),
        S("VRFY without address", ["VRFY"], "501 5.5.4 Syntax: VRFY address"),
        S(
            "too many errors",
            ["FOO"] * engine_mod.MAX_ERRORS + [WAIT],
            "421 4.7.0 127.0.0.1 Error: too many errors",
        ),
        S(
            "too many junk commands",
            ["NOOP"] * (engine_mod.MAX_JUNK + 1),
            "421 4.7.0 127.0.0.1 Error: too many junk commands",
        ),
        # bad sequence
        S(
            "MAIL before EHLO",
            ["MAIL FROM:<a@b.example>"],
            "503 5.5.1 Error: send HELO/EHLO first",
            login=False,
            hello=False,
        ),
        S(
            "AUTH before EHLO",
            ["AUTH PLAIN"],
            "503 5.5.1 Error: send HELO/EHLO first",
            login=False,
            hello=False,
        ),
        S("RCPT before MAIL", [f"RCPT TO:<{BOB}>"], "503 5.5.1 Error: need MAIL command"),
        S("DATA before MAIL", ["DATA"], "503 5.5.1 Error: need MAIL command"),
        S("nested MAIL", [f"MAIL FROM:<{LOGIN}>"] * 2, "503 5.5.1 Error: nested MAIL command"),
        S(
            "DATA without recipients",
            [f"MAIL FROM:<{LOGIN}>", "DATA"],
            "554 5.5.1 Error: no valid recipients",
        ),
        S("second AUTH", ["AUTH PLAIN"], "503 5.5.1 Error: already authenticated"),
        S(
            "MAIL without AUTH",
            [f"MAIL FROM:<{LOGIN}>"],
            "530 5.7.0 Authentication required",
            login=False,
        ),
        # bad syntax
        S("MAIL without FROM:", [f"MAIL <{LOGIN}>"], "501 5.5.4 Syntax: FROM:<address>"),
        S("unclosed path", [f"MAIL FROM:<{LOGIN}"], "501 5.1.7 Bad address syntax"),
        S("bad parameter", [f"MAIL FROM:<{LOGIN}> x_y"], "501 5.5.4 Bad parameter syntax: x_y"),
        S(
            "unknown MAIL option",
            [f"MAIL FROM:<{LOGIN}> FOO=1"],
            "555 5.5.4 Unsupported option: FOO",
        ),
        S("bad SIZE", [f"MAIL FROM:<{LOGIN}> SIZE=big"], "501 5.5.4 Bad SIZE parameter"),
        S(
            "bad BODY",
            [f"MAIL FROM:<{LOGIN}> BODY=BINARYMIME"],
            "501 5.5.4 Unsupported BODY parameter",
        ),
        S(
            "SIZE over the limit",
            [f"MAIL FROM:<{LOGIN}> SIZE=99999"],
            "552 5.3.4 Message size exceeds fixed limit",
        ),
        S(
            "empty recipient",
            [f"MAIL FROM:<{LOGIN}>", "RCPT TO:<>"],
            "501 5.1.3 Bad recipient address syntax",
        ),
        S(
            "RCPT option",
            [f"MAIL FROM:<{LOGIN}>", f"RCPT TO:<{BOB}> NOTIFY=NEVER"],
            "555 5.5.4 Unsupported option: NOTIFY",
        ),
        S(
            "recipient not a mailbox",
            [f"MAIL FROM:<{LOGIN}>", "RCPT TO:<nobody>"],
            "501 5.1.3 Bad recipient address syntax",
        ),
        S(
            "DATA argument",
            [f"MAIL FROM:<{LOGIN}>", f"RCPT TO:<{BOB}>", "DATA now"],
            "501 5.5.4 Syntax: DATA",
        ),
        # AUTH
        S(
            "unknown mechanism",
            ["AUTH CRAM-MD5"],
            "504 5.5.4 Unrecognized authentication type",
            login=False,
        ),
        S("aborted AUTH", ["AUTH PLAIN", "*"], "501 5.7.0 Authentication aborted", login=False),
        S("AUTH bad base64", ["AUTH PLAIN !!!"], "501 5.5.2 Invalid base64 data", login=False),
        S("AUTH bad PLAIN", ["AUTH PLAIN eA=="], "501 5.5.2 Invalid PLAIN response", login=False),
        S(
            "AUTH as someone else",
            [f"AUTH PLAIN {_plain_as('bob000001@[127.0.0.1]', LOGIN)}"],
            "535 5.7.8 Authentication credentials invalid",
            login=False,
        ),
        S(
            "wrong password",
            [f"AUTH PLAIN {plain(LOGIN, 'wrong-password-1')}"],
            "535 5.7.8 Error: authentication failed: authentication failure",
            login=False,
        ),
        S(
            "throttled login",
            [f"AUTH PLAIN {plain(LOGIN, PASSWORD)}"],
            "454 4.7.0 Temporary authentication failure: too many failures",
            login=False,
            setup=_throttle_logins,
        ),
        S(
            "timeout before login",
            [WAIT],
            "421 4.4.2 127.0.0.1 Error: timeout exceeded",
            login=False,
            hello=False,
            setup=_impatient,
        ),
        # 587 before STARTTLS: TLS required for AUTH
        S(
            "AUTH before STARTTLS",
            [f"AUTH PLAIN {plain(LOGIN, PASSWORD)}"],
            "530 5.7.0 Must issue a STARTTLS command first",
            service="submission",
            login=False,
            starttls=False,
        ),
        S(
            "MAIL before STARTTLS",
            [f"MAIL FROM:<{LOGIN}>"],
            "530 5.7.0 Authentication required",
            service="submission",
            login=False,
            starttls=False,
        ),
        # the envelope: sender, recipients, rate
        S("null sender", ["MAIL FROM:<>"], "500 5.1.7 Invalid from address <>"),
        S("sender without @", ["MAIL FROM:<alice>"], "500 5.1.7 Invalid from address <alice>"),
        S(
            "sender is not the login",
            [f"MAIL FROM:<{BOB}>", f"RCPT TO:<{BOB}>"],
            f"553 5.7.1 <{BOB}>: Sender address rejected: not owned by user {LOGIN}",
        ),
        S(
            "unknown recipient",
            [f"MAIL FROM:<{LOGIN}>", "RCPT TO:<ghost0001@[127.0.0.1]>"],
            "550 5.1.1 <ghost0001@[127.0.0.1]>: Recipient address rejected: User unknown",
        ),
        S(
            "too many recipients",
            [f"MAIL FROM:<{LOGIN}>", f"RCPT TO:<{BOB}>", f"RCPT TO:<{LOGIN}>", f"RCPT TO:<{BOB}>"],
            "452 4.5.3 Error: too many recipients",
        ),
        S(
            "rate limit",
            [*transaction(LOGIN, BOB, good), f"MAIL FROM:<{LOGIN}>", f"RCPT TO:<{BOB}>"],
            f"450 4.7.1: Too much mail from <{LOGIN}>, rate limited for ...",
            setup=_tight_rate,
        ),
        # the message: framing, size, memory, the PGP gate, storage
        S(
            "too big",
            [f"MAIL FROM:<{LOGIN}>", f"RCPT TO:<{BOB}>", "DATA", data(b"x" * 30_000)],
            "552 5.3.4 Error: message file too big",
        ),
        S(
            "bare LF",
            transaction(LOGIN, BOB, b"Subject: x\r\n\r\nbare\nLF\r\n"),
            "500 5.5.2 Invalid DATA",
        ),
        S(
            "memory budget spent",
            transaction(LOGIN, BOB, good),
            "421 4.3.1 Insufficient system resources, try again later",
            setup=_budget_spent,
        ),
        S(
            "unencrypted",
            transaction(LOGIN, BOB, plain_message(LOGIN, BOB)),
            "523 5.7.1 Encryption Needed: Invalid Unencrypted Mail",
        ),
        S(
            "From is not the sender",
            transaction(LOGIN, BOB, encrypted("someone@example.org")),
            f"500 5.7.1 Invalid FROM <someone@example.org> for <{LOGIN}>",
        ),
        S(
            "no From",
            transaction(LOGIN, BOB, good.replace(f"From: <{LOGIN}>\r\n".encode(), b"")),
            "500 5.6.0 Invalid FROM header: ",
        ),
        S(
            "unparsable message",
            transaction(LOGIN, BOB, b"garbage without a colon\r\n" + good),
            "500 5.6.0 Failed to parse message: ...",
        ),
        S(
            "storage failure",
            transaction(LOGIN, BOB, good),
            "451 4.3.0 Error: queue file write error",
            setup=_fail_storage,
        ),
        S(
            "recipient over quota",
            transaction(LOGIN, BOB, good),
            f"552 5.2.2 <{BOB}>: Quota exceeded (mailbox for user is full)",
            setup=_over_quota,
        ),
        S(
            "recipient gone before DATA",
            transaction(LOGIN, GONE, good),
            f"550 5.1.1 <{GONE}>: Recipient address rejected: User unknown",
            setup=_delete_gone,
        ),
        # and what succeeds carries its code too
        S(
            "accepted",
            [*transaction(LOGIN, BOB, good), "RSET", "NOOP", "VRFY x", "HELP", "QUIT"],
            "221 2.0.0 Bye",
        ),
    ]


def _plain_as(authzid: str, user: str) -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{PASSWORD}".encode()).decode()


def _delete_gone(server: RelayServer, patch: pytest.MonkeyPatch) -> None:
    # The account exists at RCPT and is gone when the message is stored.
    commit = server.app.store.commit_delivery

    async def without_gone(delivery):  # type: ignore[no-untyped-def]
        await server.app.store.delete_account(GONE)
        return await commit(delivery)

    patch.setattr(server.app.store, "commit_delivery", without_gone)


def mx_scenarios() -> list[Scenario]:
    good = encrypted(REMOTE)

    def mx(name: str, script: list[str | bytes], expect: str, **kw: object) -> Scenario:
        return Scenario(name, script, expect, service="smtp", login=False, **kw)  # type: ignore[arg-type]

    return [
        mx(
            "AUTH on port 25",
            ["AUTH PLAIN AGFAYgBj"],
            "503 5.5.1 Error: authentication not enabled",
        ),
        mx("bad sender", ["MAIL FROM:<two@x@y.example>"], "501 5.1.7 Bad sender address syntax"),
        mx(
            "bad recipient",
            [f"MAIL FROM:<{REMOTE}>", "RCPT TO:<no-at-sign>"],
            "501 5.1.3 Bad recipient address syntax",
        ),
        mx(
            "relaying",
            [f"MAIL FROM:<{REMOTE}>", "RCPT TO:<victim@elsewhere.example>"],
            "554 5.7.1 <victim@elsewhere.example>: Relay access denied",
        ),
        mx(
            "unknown user",
            [f"MAIL FROM:<{REMOTE}>", "RCPT TO:<ghost0001@[127.0.0.1]>"],
            "550 5.1.1 <ghost0001@[127.0.0.1]>: Recipient address rejected: User unknown",
        ),
        mx(
            "unencrypted",
            transaction(REMOTE, BOB, plain_message(REMOTE, BOB)),
            "523 5.7.1 Encryption Needed: Invalid Unencrypted Mail",
        ),
        mx(
            "no DKIM",
            transaction("anna@example.org", BOB, encrypted("anna@example.org")),
            "554 5.7.1 No DKIM signature found",
        ),
        mx(
            "no valid DKIM",
            transaction(
                "anna@example.org",
                BOB,
                b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AA==; b=AA==\r\n"
                + encrypted("anna@example.org"),
            ),
            "554 5.7.1 No valid DKIM signature found",
            setup=_no_dkim_keys,
        ),
        mx(
            "our own literal from outside",
            transaction(REMOTE, BOB, encrypted(LOGIN)),
            "554 5.7.1 From address in our own domain, from outside",
        ),
        mx(
            "federation policy",
            transaction("anna@blocked.example", BOB, encrypted("anna@blocked.example")),
            "550 5.7.1 Federation policy rejection",
        ),
        mx(
            "unreadable From",
            transaction(REMOTE, BOB, good),
            "500 5.6.0 Failed to parse message headers",
            setup=_unreadable_from,
        ),
        mx(
            "bare LF",
            transaction(REMOTE, BOB, b"Subject: x\r\n\r\nbare\nLF\r\n"),
            "500 5.5.2 Invalid DATA",
        ),
        mx(
            "storage failure",
            transaction(REMOTE, BOB, good),
            "451 4.3.0 Error: queue file write error",
            setup=_fail_storage,
        ),
        mx("accepted", [*transaction(REMOTE, BOB, good), "QUIT"], "221 2.0.0 Bye"),
    ]


@pytest.mark.parametrize("hello", HELLOS)
async def test_every_submission_reply_carries_an_enhanced_code(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch, hello: str
) -> None:
    await create_accounts(relay_server, "alice0001", "bob000001", "gone00001")
    await run_table(relay_server, monkeypatch, submission_scenarios(), hello)


@pytest.mark.parametrize("hello", HELLOS)
async def test_every_mx_reply_carries_an_enhanced_code(
    relay_server: RelayServer, monkeypatch: pytest.MonkeyPatch, hello: str
) -> None:
    await create_accounts(relay_server, "bob000001")
    await run_table(relay_server, monkeypatch, mx_scenarios(), hello)


def test_the_connection_cap_reply_carries_an_enhanced_code() -> None:
    assert STATUS_LINE.match(session.TOO_MANY_CONNECTIONS)


# ---- the rule itself -----------------------------------------------------------------------


def test_the_engine_refuses_to_send_a_line_without_an_enhanced_code() -> None:
    engine = make_engine()
    pump(engine, b"EHLO c\r\nAUTH PLAIN " + plain("a@relay.test", "pw").encode() + b"\r\n")
    engine.data_to_send()
    engine.receive_data(b"MAIL FROM:<a@relay.test>\r\n")
    engine.next_event()
    with pytest.raises(ValueError, match="lacks an enhanced status code"):
        engine.reject(523, "Encryption Needed: Invalid Unencrypted Mail")
    with pytest.raises(ValueError):
        make_engine().shutdown("Error: timeout exceeded")
    with pytest.raises(ValueError):
        make_engine().shutdown("5.4.2 wrong class", 421)


def test_a_reply_code_and_its_enhanced_code_agree() -> None:
    with pytest.raises(ValueError):
        Reply(450, "5.7.1", "wrong class")
    with pytest.raises(ValueError):
        Reply(550, "5.7", "not a status code")
    reply = Reply(523, "5.7.1", "Encryption Needed: Invalid Unencrypted Mail")
    assert str(reply) == "523 5.7.1 Encryption Needed: Invalid Unencrypted Mail"
    assert reply.after_code == "5.7.1 Encryption Needed: Invalid Unencrypted Mail"


def test_the_rate_limit_line_is_filtermails() -> None:
    # The official relay's test_exceed_rate_limit looks for b"4.7.1: Too much mail from".
    class Limiter:
        def allow(self, key: str) -> bool:
            return False

        def retry_after(self, key: str) -> float:
            return 2.4

    class Log:
        def info(self, *args: object, **kwargs: object) -> None:
            pass

        def redact(self, value: str) -> str:
            return value

    class App:
        send_rate = Limiter()
        log = Log()

    reply = submission.rate_refusal(App(), LOGIN)  # type: ignore[arg-type]
    assert reply is not None
    assert str(reply) == f"450 4.7.1: Too much mail from <{LOGIN}>, rate limited for 2 s"
    assert reply.enhanced == "4.7.1"
