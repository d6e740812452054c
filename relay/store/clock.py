"""The time that deletions may be based on.

A Raspberry Pi has no real-time clock: it boots with the time it was shut down at (or the
image's build date) until NTP answers, and a clock can also be set wrong by hand. Stamps
(arrival dates, login days) simply use the wall clock; deciding what is old enough to delete
does not, because a clock jumped five years ahead would make all mail look five years old.

ExpiryClock therefore gives no time at all until the clock is confirmed (systemd-timesyncd
has synchronised; machines without timesyncd count as confirmed), and from the first
confirmed reading on it lets time advance no faster than the monotonic clock does: a jump
forward within a run is not believed; a jump back is (it deletes less). Stamps that lie in
the future of a confirmed clock are clamped by the expiry pass (relay/store/expiry.py), so
mail stamped while the clock was ahead ages from now on instead of never.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

TIMESYNC_DIR = Path("/run/systemd/timesync")
SLACK = 3600.0  # seconds the wall clock may run ahead of the monotonic one (drift, NTP steps)


def clock_confirmed(timesync_dir: Path = TIMESYNC_DIR) -> bool:
    """True unless systemd-timesyncd runs and has not synchronised yet (off the appliance: True)."""
    if not timesync_dir.is_dir():
        return True
    return (timesync_dir / "synchronized").exists()


class ExpiryClock:
    def __init__(
        self,
        wall: Callable[[], float],
        confirmed: Callable[[], bool] = clock_confirmed,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.wall = wall
        self.confirmed = confirmed
        self.monotonic = monotonic
        self._reference: tuple[float, float] | None = None  # (wall, monotonic) when confirmed

    def now(self) -> float | None:
        """The time to expire by, or None while the clock is not confirmed."""
        if not self.confirmed():
            return None
        wall, mono = self.wall(), self.monotonic()
        if self._reference is None:
            self._reference = (wall, mono)
            return wall
        wall0, mono0 = self._reference
        return min(wall, wall0 + (mono - mono0) + SLACK)
