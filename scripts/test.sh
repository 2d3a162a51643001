#!/usr/bin/env bash
# The test command (README): installs everything on a fresh machine, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] && bash scripts/setup-services.sh
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[dev]' 2> >(grep -v '^WARNING: Location' >&2)
exec .venv/bin/python -m pytest "$@"
