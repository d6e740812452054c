#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine (as root), then runs them all.
# Usage: ./tests/run-all.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=$(grep -v '^\s*#' tests/system-packages.txt | xargs)
if [ -n "$packages" ] && command -v apt-get >/dev/null; then
    missing=$(for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
    if [ -n "$missing" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $missing
    fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test,postgresql]'

.venv/bin/ruff check relay hwctl tests bench image
.venv/bin/ruff format --check --quiet relay hwctl tests bench image
.venv/bin/mypy  # relay/, configured in pyproject.toml
exec .venv/bin/pytest "$@"
