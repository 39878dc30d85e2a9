#!/usr/bin/env bash
# Set up everything, start a throw-away PostgreSQL on loopback, run the whole test suite
# against SQLite and PostgreSQL. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# Browser tests (HTML reports, console) drive Debian's Chromium; install it when missing (root only).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  apt-get install -y chromium fonts-noto-cjk || { apt-get update && apt-get install -y chromium fonts-noto-cjk; }
fi
if [ -z "${SCENEMATCH_TEST_POSTGRES_URL:-}" ]; then
  pgdir=$(mktemp -d /tmp/scenematch-pg.XXXXXX)
  trap './scripts/postgres.sh stop "$pgdir" >/dev/null 2>&1 || true; rm -rf "$pgdir"' EXIT
  SCENEMATCH_TEST_POSTGRES_URL=$(./scripts/postgres.sh start "$pgdir")
  export SCENEMATCH_TEST_POSTGRES_URL
fi
.venv/bin/python -m pytest "$@"
