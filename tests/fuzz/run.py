"""Run one fuzz target under atheris (libFuzzer): coverage-guided, with time and memory bounds.

    .venv/bin/python tests/fuzz/run.py TARGET [libFuzzer flags] [CORPUS_DIR ...]
    .venv/bin/python tests/fuzz/run.py TARGET crash-1234abcd     # replay one input
    .venv/bin/python tests/fuzz/run.py --list

Flags that are not given get this target's defaults: -max_len (a realistic size for the
parser), -timeout (seconds for one input) and -rss_limit_mb. On top of libFuzzer's fixed
-timeout every input gets a budget that grows with its length (TIME_BASE + TIME_PER_BYTE * len);
an input over it is run once more and reported as a finding (SlowInput) only if it is over
again, so a loaded machine does not make findings up. libFuzzer's -malloc_limit_mb needs
sanitizer hooks that CPython's allocator does not call, so the process gets a data limit
instead (RLIMIT_DATA): an allocation past it is a MemoryError, which is a finding.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TIME_BASE = 0.5  # seconds any input may take (instrumented code, a loaded machine)
TIME_PER_BYTE = 50e-6  # and this much per input byte: 64 KiB may take 3.8 s; quadratic cannot
TIMEOUT = 20  # libFuzzer's own per-input limit (seconds), a backstop for hangs
RSS_LIMIT_MB = 1024  # libFuzzer's check of the whole process, once a second
DATA_LIMIT_MB = 2048  # the kernel's limit on the heap: a huge allocation fails at once

INSTRUMENTED = ["relay", "chatmail_setup", "h11", "email", "tomllib"]
NOT_INSTRUMENTED = ["relay.store", "relay.outbound"]  # imported, but no target reaches them

with atheris.instrument_imports(include=INSTRUMENTED, exclude=NOT_INSTRUMENTED):
    from tests.fuzz import targets

    targets.load_setup_script()  # instrument the appliance script too (a file, not a module)


class SlowInput(Exception):
    """An input took longer than its size allows."""


def guarded(target: targets.Target) -> Callable[[bytes], None]:
    def one_input(data: bytes) -> None:
        budget = TIME_BASE + TIME_PER_BYTE * len(data)
        started = time.perf_counter()
        target(data)
        if time.perf_counter() - started <= budget:
            return
        started = time.perf_counter()  # once more: a pause of the machine is not a finding
        target(data)
        took = time.perf_counter() - started
        if took > budget:
            raise SlowInput(f"{took:.3f} s for {len(data)} bytes (budget {budget:.3f} s)")

    return one_input


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(2)
    if args[0] == "--list":
        for t in targets.TARGETS.values():
            print(f"{t.name}\t{t.max_len}")
        return
    name, flags = args[0], args[1:]
    target = targets.TARGETS.get(name)
    if target is None:
        sys.exit(f"unknown target {name!r}; --list shows them")
    defaults = {
        "-max_len": target.max_len,
        "-timeout": TIMEOUT,
        "-rss_limit_mb": RSS_LIMIT_MB,
    }
    given = {f.split("=", 1)[0] for f in flags if f.startswith("-")}
    extra = [f"{k}={v}" for k, v in defaults.items() if k not in given]
    limit = DATA_LIMIT_MB << 20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    atheris.Setup([sys.argv[0], *extra, *flags], guarded(target))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
