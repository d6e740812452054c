"""The SASL dialog of SMTP AUTH (RFC 4954) for PLAIN (RFC 4616) and LOGIN, without I/O.

`SaslExchange.start()` and `.step(line)` return what the engine should do next: send a 334
challenge, check credentials, or fail with a reply.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from relay.smtp.syntax import SyntaxProblem, decode_b64_text, parse_plain_response

MECHANISMS = ("PLAIN", "LOGIN")
USERNAME_CHALLENGE = base64.b64encode(b"Username:").decode()
PASSWORD_CHALLENGE = base64.b64encode(b"Password:").decode()


@dataclass(frozen=True)
class Challenge:
    text: str  # sent as "334 <text>"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Failure:
    code: int
    text: str


Step = Challenge | Credentials | Failure


class SaslExchange:
    def __init__(self, mechanism: str, initial_response: str):
        self.mechanism = mechanism
        self._initial = initial_response
        self._username: str | None = None

    def start(self) -> Step:
        if self.mechanism not in MECHANISMS:
            return Failure(504, "5.5.4 Unrecognized authentication type")
        if not self._initial:
            return Challenge("" if self.mechanism == "PLAIN" else USERNAME_CHALLENGE)
        # "=" is an empty initial response (RFC 4954 4)
        return self.step("" if self._initial == "=" else self._initial)

    def step(self, line: str) -> Step:
        if line.strip() == "*":
            return Failure(501, "5.7.0 Authentication aborted")
        try:
            if self.mechanism == "PLAIN":
                return Credentials(*parse_plain_response(line))
            value = decode_b64_text(line)
        except SyntaxProblem as e:
            return Failure(e.code, e.text)
        if self._username is None:
            self._username = value
            return Challenge(PASSWORD_CHALLENGE)
        return Credentials(self._username, value)
