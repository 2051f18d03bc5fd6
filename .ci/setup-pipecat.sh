#!/usr/bin/env bash
# Creates <repo>/.venv-pyx for the Python binding tests: pipecat-ai and aiortc at the
# versions the scale bench pins (benches/requirements-pipecat.txt, tests/peers/
# requirements.txt), plus our package (pip install ./python, to prove it installs; the
# tests import the working tree's copy through PYTHONPATH). Idempotent: does nothing when
# the venv imports and was built from the current requirement files and pyproject.
# Env: PYTHON (interpreter used to create the venv, default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-pyx"
REQS=("$ROOT/benches/requirements-pipecat.txt" "$ROOT/tests/peers/requirements.txt")
STAMP="$VENV/.requirements.sha256"
PY="${PYTHON:-python3}"

log() { echo "setup-pipecat: $*" >&2; }

want="$(cat "${REQS[@]}" "$ROOT/python/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && "$VENV/bin/python" -c 'import importlib.util as u, pipecat, aiortc; assert u.find_spec("smallwebrtc")' \
        >/dev/null 2>&1; then
    exit 0
fi
if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" || { log "cannot create $VENV (python3-venv missing?)"; exit 1; }
fi
pipi() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
pipi -r "${REQS[0]}" -r "${REQS[1]}" || { log "pip install of the pinned requirements failed"; exit 1; }
pipi "$ROOT/python" || { log "pip install ./python failed"; exit 1; }
# A damaged venv can look installed to pip: it must import.
"$VENV/bin/python" -c 'import pipecat, aiortc, av, numpy' || { log "import check failed"; exit 1; }
echo "$want" > "$STAMP"
log "ready: pipecat $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("pipecat-ai"))')"
