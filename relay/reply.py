"""`Reply`: what a decision answers, from policy through the core to every protocol.

SMTP sends it as it is (`code` and the rest of the line); /mxdeliv sends `str(reply)` as the body
of its HTTP answer, so a sending relay can pass the exact line on; WebIMAP and the admin API show
it. Policy and core return a `Reply` value instead of a string that callers take apart again.
It lives beside, not inside, the core because policy (below the core) returns it too.

Enhanced status codes (RFC 3463), one rule: every Reply is built with its enhanced code, given
explicitly where the Reply is made (no default is derived from the reply class: "5.0.0" says
nothing a client can act on). Its class digit is the reply's (a 450 carries 4.x.x). So one Reply
is one line on every transport, and the SMTP line carries the code right after the reply code,
as RFC 2034 requires once ENHANCEDSTATUSCODES is advertised. The text after the code is the
official relay's where it has one. Its filter (filtermail) answers some refusals without a code
("523 Encryption Needed: Invalid Unencrypted Mail") and Postfix in front passes such lines on
verbatim, so the official relay's clients see them without one; we add the code and keep the
text ("523 5.7.1 Encryption Needed: Invalid Unencrypted Mail"). A text that starts with ":"
follows the code without a space: filtermail's rate-limit line reads "450 4.7.1: Too much mail
from ...", and the official relay's tests look for exactly "4.7.1: Too much mail from".

`enhanced=""` is left only for lines that never travel over SMTP (today the three answers that
/mxdeliv makes itself, which repeat filtermail's HTTP bodies byte for byte); the SMTP engine
refuses to send a 2xx/4xx/5xx line without a code, so such a Reply cannot reach an SMTP client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENHANCED_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True, slots=True)
class Reply:
    code: int  # the SMTP reply code: 2xx accepted, 4xx try again later, 5xx refused for good
    enhanced: str  # RFC 3463 status ("5.7.1") of the same class; "" only for non-SMTP lines
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code < 600:
            raise ValueError(f"not a reply code: {self.code}")
        if self.enhanced and not (
            ENHANCED_CODE.fullmatch(self.enhanced) and self.enhanced[0] == str(self.code)[0]
        ):
            raise ValueError(f"{self.enhanced!r} is not an enhanced status code for {self.code}")

    @property
    def accepted(self) -> bool:
        return self.code < 400

    @property
    def after_code(self) -> str:
        """The line without its code, as an SMTP engine's reply text."""
        if not self.enhanced:
            return self.text
        return f"{self.enhanced}{'' if self.text.startswith(':') else ' '}{self.text}"

    def __str__(self) -> str:
        return f"{self.code} {self.after_code}"
