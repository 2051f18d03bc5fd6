#!/usr/bin/env bash
# Creates <repo>/.venv and installs the Python test peers' requirements
# (tests/peers/requirements.txt). Idempotent: does nothing when the venv
# works and was built from the current requirements file.
# Env: PYTHON (interpreter used to create the venv, default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQ="$ROOT/tests/peers/requirements.txt"
STAMP="$VENV/.requirements.sha256"
PY="${PYTHON:-python3}"

log() { echo "setup-python: $*" >&2; }

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 \
    && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi

make_venv() {
    rm -rf "$VENV"
    "$1" -m venv "$VENV" >/dev/null 2>&1
}

# A venv whose interpreter no longer runs (base python gone) is rebuilt.
if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }; then
    if ! make_venv "$PY"; then
        log "'$PY -m venv' failed; installing Debian's python3-venv"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq python3-venv >/dev/null
        make_venv "$PY" || make_venv /usr/bin/python3 || {
            log "cannot create $VENV"; rm -rf "$VENV"; exit 1; }
    fi
fi

"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"; then
    log "pip install -r tests/peers/requirements.txt failed"
    exit 1
fi
"$VENV/bin/python" -c 'import aiortc, aioice, av, numpy' || { log "import check failed"; exit 1; }
echo "$want" > "$STAMP"
log "ready: $("$VENV/bin/python" -c 'import aiortc, sys; print("python", sys.version.split()[0], "aiortc", aiortc.__version__)')"
