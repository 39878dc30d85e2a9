#!/usr/bin/env bash
# Create .venv in the repo root, install scenematch with pinned dependencies, build the
# offline embedding model. Idempotent: a second run with an unchanged pyproject is fast.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" - <<'PYEOF'
import sys
if sys.version_info[:2] != (3, 11):
    sys.exit(f"scenematch needs Python 3.11, found {sys.version.split()[0]}; set PYTHON=/path/to/python3.11")
PYEOF
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.scenematch-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing dependencies into .venv (torch CPU build, pinned)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch first and alone, pinned, so nothing else can pull a CUDA build.
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[test]"
  echo "$want" > "$stamp"
fi
echo "==> building the offline embedding model (cached after the first run)"
.venv/bin/scenematch build-model
