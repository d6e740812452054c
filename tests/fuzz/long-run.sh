#!/usr/bin/env bash
# The long form of the fuzzing: every target (or the ones named) for SECONDS each, one after
# the other, then a line per target: executions, corpus growth, and what it found.
# Usage: tests/fuzz/long-run.sh SECONDS [TARGET ...]
# Work files (the grown corpus, crash reproducers, logs) go to $FUZZ_WORK (default: a new
# temporary directory); the committed seed corpus is only read.
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:?usage: tests/fuzz/long-run.sh SECONDS [TARGET ...]}
shift
python=${PYTHON:-.venv/bin/python}
work=${FUZZ_WORK:-$(mktemp -d -t relay-fuzz-XXXXXX)}
mkdir -p "$work"
if [ $# -gt 0 ]; then
    names=("$@")
else
    listing=$("$python" tests/fuzz/run.py --list) || exit 2
    mapfile -t names < <(cut -f1 <<<"$listing")
fi

summary=()
status=0
for name in "${names[@]}"; do
    mkdir -p "$work/$name/corpus" "$work/$name/artifacts"
    log="$work/$name/log"
    echo "== $name: $seconds s" >&2
    "$python" tests/fuzz/run.py "$name" \
        -max_total_time="$seconds" -print_final_stats=1 -print_pcs=0 \
        -artifact_prefix="$work/$name/artifacts/" \
        "$work/$name/corpus" "tests/fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    units=$(find "$work/$name/corpus" -type f | wc -l)
    found=$(find "$work/$name/artifacts" -type f | sort)
    if [ -z "$found" ] && [ "$rc" -eq 0 ]; then
        what="nothing"
    else
        status=1
        kind=$(grep -m1 -E '^(=== Uncaught Python exception|==[0-9]+== ERROR|ALARM|MS:)' "$log" || true)
        error=$(grep -m1 -E '^[A-Za-z_.]+(Error|Exception|Input|Problem)\b' "$log" || true)
        what="rc=$rc ${error:-$kind}; reproducer(s): ${found//$'\n'/ }"
    fi
    summary+=("$(printf '%-16s executions=%-9s exec/s=%-6s peak_rss_mb=%-5s new_units=%-5s found: %s' \
        "$name" "${execs:-?}" "${rate:-?}" "${rss:-?}" "$units" "$what")")
done

echo
echo "fuzzing: $seconds s per target; work files in $work"
printf '%s\n' "${summary[@]}"
exit $status
