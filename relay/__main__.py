"""`python -m relay` and the `relay` command.

A stop signal that arrives while Python is still importing the relay ends it quietly with exit
code 0; once `relay serve` runs, its own signal handling (relay/server.py) takes over.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _stop_while_starting(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_while_starting)
    from relay.server import main as relay_command

    return relay_command()


if __name__ == "__main__":
    raise SystemExit(main())
