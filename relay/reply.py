"""`Reply`: what a decision answers, from policy through the core to every protocol.

SMTP sends it as it is (`code` and the rest of the line); /mxdeliv sends `str(reply)` as the body
of its HTTP answer, so a sending relay can pass the exact line on; WebIMAP and the admin API show
it. Policy and core return a `Reply` value instead of a string that callers take apart again.
It lives beside, not inside, the core because policy (below the core) returns it too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    code: int  # the SMTP reply code: 2xx accepted, 4xx try again later, 5xx refused for good
    enhanced: str  # RFC 3463 status ("5.7.1"), "" where the anchor sends none
    text: str

    @property
    def accepted(self) -> bool:
        return self.code < 400

    @property
    def after_code(self) -> str:
        """The line without its code, as an SMTP engine's reply text."""
        return f"{self.enhanced} {self.text}" if self.enhanced else self.text

    def __str__(self) -> str:
        return f"{self.code} {self.after_code}"
