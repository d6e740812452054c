"""A start the relay refuses because restarting cannot help: said on stderr (the journal), in
`<data_dir>/start-refused.txt` for the panel (hwctl shows its lines while the relay is down),
and by the exit status EXIT_REFUSED, after which the appliance's unit does not restart it
(RestartPreventExitStatus): ten restarts would only end in a reboot into the same refusal.
The file goes once a relay opens its store again."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from relay.durable import write_atomically

EXIT_REFUSED = 65  # EX_DATAERR: the data on disk is what is wrong
NOTE = "start-refused.txt"


def refuse(data_dir: Path, reason: str, panel: tuple[str, ...]) -> int:
    """Tell why the relay does not start; returns the exit status."""
    print(f"relay serve: not started: {reason}", file=sys.stderr, flush=True)
    with contextlib.suppress(OSError):  # a data disk that cannot take it: stderr said it
        write_atomically(data_dir / NOTE, "".join(f"{line}\n" for line in panel).encode())
    return EXIT_REFUSED


def clear(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / NOTE).unlink()
