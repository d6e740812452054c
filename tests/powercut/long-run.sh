#!/usr/bin/env bash
# The long form of the power-cut harness (issue 26, part 4): CUTS power cuts under load with
# everything unsynced dropped, CUTS more where the cache wrote back half of it (--torn), then the
# two controls (fsync ignored everywhere, or for file data only), which must lose mail.
# Usage: tests/powercut/long-run.sh [CUTS] [CONTROL_CUTS]   (default 50 and 10; about 15 minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
cuts=${1:-50}
control_cuts=${2:-10}
py=${PYTHON:-.venv/bin/python}
failed=0

run() {  # expected exit status, then harness arguments
    local want=$1 got=0
    shift
    "$py" -m tests.powercut.harness "$@" || got=$?
    if [ "$got" -ne "$want" ]; then
        echo "UNEXPECTED: harness $* exited $got, expected $want" >&2
        failed=1
    fi
    echo
}

run 0 --cuts "$cuts"
run 0 --cuts "$cuts" --torn
run 1 --cuts "$control_cuts" --ignore-fsync=all    # the control must find lost mail
run 1 --cuts "$control_cuts" --ignore-fsync=files
exit "$failed"
