"""State the SMTP sessions of one relay share: send rate and connections per IP."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.ratelimit import GCRA, ConnectionCounter

if TYPE_CHECKING:
    from relay.app import App


class SMTPLimits:
    def __init__(self) -> None:
        self._send: GCRA | None = None
        self._send_params: tuple[int, int] | None = None
        self.connections = ConnectionCounter()  # per client IP

    def send_limiter(self, app: App) -> GCRA:
        """The per-sender GCRA; rebuilt if a reload changed the limits."""
        limits = app.config.limits
        params = (limits.max_user_send_per_minute, limits.max_user_send_burst_size)
        if self._send is None or params != self._send_params:
            self._send, self._send_params = GCRA(*params), params
        return self._send


def limits_for(app: App) -> SMTPLimits:
    return app.service_state("smtp", SMTPLimits)
