"""The short form of the fuzzing, run with the test suite: every target for a few seconds.

Each target runs as its own process (tests/fuzz/run.py under atheris), two at a time, from its
seed corpus. A target that finds anything (an exception other than the parser's own errors, a
broken property, an input slower or bigger than its size allows) fails its test, which prints
the reproducer as a Python literal and the fuzzer's report. The long form is
tests/fuzz/long-run.sh; docs/fuzzing.md explains both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fuzz import targets

pytest.importorskip("atheris", reason="atheris is in the test extra: pip install -e '.[test]'")

SECONDS = float(os.environ.get("FUZZ_SHORT_SECONDS", "3"))  # per target
PARALLEL = 2
RUNNER = Path(__file__).resolve().parent / "run.py"


@dataclass
class Outcome:
    returncode: int
    log: str
    reproducers: list[Path]
    seconds: float


def fuzz(name: str, work: Path) -> Outcome:
    corpus, artifacts = work / name / "corpus", work / name / "artifacts"
    corpus.mkdir(parents=True)
    artifacts.mkdir()
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            name,
            f"-max_total_time={SECONDS:g}",
            f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1",
            str(corpus),
            str(targets.TARGETS[name].corpus),
        ],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=SECONDS + 120,
    )
    return Outcome(
        result.returncode,
        result.stdout + result.stderr,
        sorted(artifacts.iterdir()),
        time.monotonic() - started,
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    work = tmp_path_factory.mktemp("fuzz")
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {name: pool.submit(fuzz, name, work) for name in targets.TARGETS}
        return {name: future.result() for name, future in futures.items()}


def report(outcome: Outcome) -> str:
    lines = [f"exit code {outcome.returncode} after {outcome.seconds:.1f} s"]
    for path in outcome.reproducers:
        data = path.read_bytes()
        shown = repr(data[:4000]) + (f" ... ({len(data)} bytes)" if len(data) > 4000 else "")
        lines += [f"reproducer {path.name}:", shown]
    log = [line for line in outcome.log.splitlines() if not line.startswith(("INFO:", "#"))]
    lines += ["fuzzer report:", *log[-60:]]
    return "\n".join(lines)


@pytest.mark.parametrize("name", list(targets.TARGETS))
def test_target_finds_nothing_in_a_short_run(name: str, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[name]
    assert outcome.returncode == 0 and not outcome.reproducers, report(outcome)
    executions = [
        int(line.rsplit(":", 1)[1])
        for line in outcome.log.splitlines()
        if line.startswith("stat::number_of_executed_units:")
    ]
    assert executions and executions[0] > 0, report(outcome)  # it really fuzzed
