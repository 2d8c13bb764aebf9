#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv and install the pinned dependencies.
#
# The venv lives in ~/.cache/rdg-platform/venv-<hash of pyproject.toml + requirements.lock> and .venv
# links to it, so a fresh clone (CI) reuses an identical environment instead of reinstalling ~1 GB of
# wheels; any change to the pins makes a new one. Java 17 and Maven are checked, not installed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,11) else 1)' 2>/dev/null; then
      PY=$cand; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "bootstrap: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1
fi
for tool in java mvn; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bootstrap: '$tool' not found on PATH (need Java 17 and Maven; see README prerequisites)" >&2; exit 1; }
done

HASH=$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-12)
VENV=${RDG_VENV:-$HOME/.cache/rdg-platform/venv-$HASH}
if [ ! -f "$VENV/.rdg-complete" ]; then
  echo "bootstrap: creating $VENV (first run downloads the pinned wheels; later runs reuse it)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip setuptools wheel
  "$VENV/bin/pip" install --progress-bar off -c requirements.lock -e ".[dev]"
  touch "$VENV/.rdg-complete"
else
  echo "bootstrap: reusing $VENV"
  "$VENV/bin/pip" install --quiet --no-deps -e .
fi
ln -sfn "$VENV" .venv
"$ROOT/scripts/vendor_js.sh"  # the explorer page's Cytoscape.js, pinned, with its licence
echo "bootstrap: ready ($(.venv/bin/python --version), $(java -version 2>&1 | head -1))"
