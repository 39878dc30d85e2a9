#!/usr/bin/env bash
# Set up everything, then serve the API with the demo corpus on 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/scenematch serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
