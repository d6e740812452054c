"""Which relay versions may open the embedded store: the marker `<store>/FORMAT`.

Both root slots of the appliance share the data partition, so after a rolled-back update an
older relay opens a store a newer one has written (docs/updates.md). The marker holds two
numbers, `{"format": F, "readable_by": R}`: the store format of the newest relay that wrote
here, and the oldest format that still reads everything it wrote. A version that changes the
format keeps older ones working where it can (a column with a default, a record type older
versions never see) and raises READABLE_BY only where it cannot. A relay of format `FORMAT`:

- opens a store of its own format or an older one, and claims it (`format` = FORMAT,
  `readable_by` = READABLE_BY) before it writes anything: the forward migration;
- opens a newer store whose `readable_by` is at most FORMAT, and leaves the marker as it is;
- refuses a store it cannot read (StoreTooNew), before it reads or writes a byte of it: an
  older relay replaying records it does not know would take them for a torn tail and cut the
  log there. A store without a marker was made before markers: format 1; an empty marker (a
  cut on a disk that lies about fsync) counts as none. Anything else unreadable is refused.

The marker is written only when it changes (at an upgrade), so an idle store writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from relay.durable import write_atomically

from .types import StoreError

FORMAT = 1  # this relay's: segments v1, the index schema of relay/store/index.py
READABLE_BY = 1  # the oldest format that reads what this relay writes
MARKER = "FORMAT"


class StoreTooNew(StoreError):
    """A newer relay wrote the store in a format this one cannot read without damaging it."""

    panel = ("The data is from a newer", "version of the relay.", "Nothing was changed.")


def claim(directory: Path) -> None:
    """Check that this relay may open the store in `directory`, and mark it as its own."""
    path = directory / MARKER
    try:
        raw = path.read_bytes() if path.exists() else b""
        # Empty: made before markers, or its rename reached the disk and its bytes did not (a
        # disk that lies about fsync, cut right after the marker was made).
        unmarked = not raw.strip()
        found = {"format": 1, "readable_by": 1} if unmarked else json.loads(raw)
        written, readable_by = int(found["format"]), int(found["readable_by"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StoreError(f"{path} cannot be read ({e}): the store is left as it is") from None
    if readable_by > FORMAT:
        raise StoreTooNew(
            f"{directory} was written by a newer relay (store format {written}, read by format"
            f" {readable_by} and later); this relay reads format {FORMAT} and would damage it."
            " Start the newer version again (install its update once more) or restore a backup:"
            " nothing has been changed"
        )
    if unmarked or written < FORMAT:
        marker = {"format": FORMAT, "readable_by": READABLE_BY}
        write_atomically(path, json.dumps(marker).encode())
