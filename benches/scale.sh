#!/usr/bin/env bash
# Scale bench: how many real-time voice sessions one core holds, our echo example against a
# Pipecat echo bot, and the same Pipecat echo pipeline on our Pipecat transport (the Python
# package in python/), measured by the same load generator in the same run.
#
#   bash benches/scale.sh
#
# Builds the echo example and the load generator (benches/loadgen.rs), installs Pipecat into
# its own venv (.venv-pipecat, from benches/requirements-pipecat.txt), then for each server:
# starts it pinned to core 0 (taskset -c 0), runs the generator pinned to core 1, ramps the
# session count until the server stops keeping real time (< 99 % of echo bursts back, or
# p95 echo latency > 2 x the single-session p95), narrows the limit, holds the maximum, and
# finally prints tables side by side with the ratio (ours / Pipecat, and Pipecat on our
# transport / Pipecat on its own). Loopback (127.0.0.1) only.
#
# Settings (environment): STEPS (session counts of the ramp), STEP_SECS (measured seconds
# per step, default 20), HOLD_SECS (hold at the maximum, for drift; default 300, the
# 5-minute run), REFINE (probes between the last real-time step and the first that was
# not; default 2),
# BUDGET_SECS (ramp + refine time per server; default 300), OUR_PORT / PIPECAT_PORT /
# PIPECAT_SWRTC_PORT (7870 / 7871 / 7872), VENV (.venv-pipecat), OUT (target/scale: logs,
# the raw JSON and a CSV of every burst), SERVERS (which to run, default "smallwebrtc
# pipecat"; add pipecat-swrtc for the Pipecat pipeline on our transport; a table needs
# both of its servers), ONLY (one server), NICE
# (default -10: run as root, both the server and the generator get that priority so other
# work on the machine disturbs the measurement less; 0 to leave priorities alone).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STEPS=${STEPS:-1,10,25,50,75,100,150,200,300,400,500,600,800,1000}
STEP_SECS=${STEP_SECS:-20}
HOLD_SECS=${HOLD_SECS:-300}
REFINE=${REFINE:-2}
BUDGET_SECS=${BUDGET_SECS:-300}
OUR_PORT=${OUR_PORT:-7870}
PIPECAT_PORT=${PIPECAT_PORT:-7871}
PIPECAT_SWRTC_PORT=${PIPECAT_SWRTC_PORT:-7872}
VENV=${VENV:-.venv-pipecat}
OUT=${OUT:-target/scale}
ONLY=${ONLY:-}
SERVERS=" ${ONLY:-${SERVERS:-smallwebrtc pipecat}} "
want() { [[ "$SERVERS" == *" $1 "* ]]; }
NICE=${NICE:--10}
PRIO=()
if [ "$NICE" != 0 ] && [ "$(id -u)" = 0 ]; then
    PRIO=(nice -n "$NICE")
fi
mkdir -p "$OUT"
start=$(date +%s)

if [ "$(nproc)" -lt 2 ]; then
    echo "scale.sh: needs 2 cores (server on core 0, generator on core 1)" >&2
    exit 1
fi

# --- build -----------------------------------------------------------------------------------
echo "== building the library, the echo example and the load generator (release)"
cargo build --release --lib --example echo --bench loadgen --message-format=json-render-diagnostics \
    > "$OUT/build.json"
LOADGEN=$(grep '"name":"loadgen"' "$OUT/build.json" | grep -o '"executable":"[^"]*"' \
    | tail -n 1 | cut -d'"' -f4)
ECHO=$(grep '"name":"echo"' "$OUT/build.json" | grep -o '"executable":"[^"]*"' \
    | tail -n 1 | cut -d'"' -f4)
if [ -z "$LOADGEN" ] || [ -z "$ECHO" ]; then
    echo "scale.sh: cannot find the built loadgen/echo executables" >&2
    exit 1
fi

# --- Pipecat venv ----------------------------------------------------------------------------
if want pipecat || want pipecat-swrtc; then
    echo "== Pipecat venv ($VENV)"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --upgrade pip
    fi
    "$VENV/bin/pip" install -q -r benches/requirements-pipecat.txt
    # A venv whose files were damaged still looks installed to pip: check that it imports.
    if ! "$VENV/bin/python" -c "import av, aiortc, pipecat" >/dev/null 2>&1; then
        echo "== the venv does not import; reinstalling its packages"
        "$VENV/bin/pip" install -q --ignore-installed -r benches/requirements-pipecat.txt
    fi
fi

# --- servers ---------------------------------------------------------------------------------
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop_server EXIT

# Every generated session comes from 127.0.0.1: lift our servers' live-peer caps (256 overall,
# 32 per source address by default) above the largest ramp step.
PEER_CAPS=(--max-peers 4000 --max-peers-per-source 4000)

# run_one LABEL PORT COMMAND...: starts the server on core 0, ramps it from core 1.
run_one() {
    local label=$1 port=$2
    shift 2
    echo "== $label: server on core 0, load generator on core 1"
    "${PRIO[@]}" taskset -c 0 "$@" > "$OUT/$label.server.log" 2>&1 &
    SERVER_PID=$!
    local up=""
    for _ in $(seq 1 600); do   # at most 60 s (Pipecat takes ~10 s to import)
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            break
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            up=1
            break
        fi
        sleep 0.1
    done
    if [ -z "$up" ]; then
        echo "scale.sh: $label did not start listening on 127.0.0.1:$port; its log:" >&2
        tail -n 20 "$OUT/$label.server.log" >&2
        exit 1
    fi
    "${PRIO[@]}" taskset -c 1 "$LOADGEN" --url "http://127.0.0.1:$port/api/offer" --pid "$SERVER_PID" \
        --label "$label" --steps "$STEPS" --step-secs "$STEP_SECS" --hold-secs "$HOLD_SECS" \
        --refine "$REFINE" --budget-secs "$BUDGET_SECS" --json "$OUT/$label.json" \
        --trace "$OUT/$label.bursts.csv" \
        2>&1 | tee "$OUT/$label.log"
    stop_server
}

if want smallwebrtc; then
    run_one smallwebrtc "$OUR_PORT" "$ECHO" --addr "127.0.0.1:$OUR_PORT" --no-rtvi \
        "${PEER_CAPS[@]}"
fi
if want pipecat; then
    run_one pipecat "$PIPECAT_PORT" "$VENV/bin/python" benches/pipecat_echo_bot.py \
        --port "$PIPECAT_PORT"
fi
if want pipecat-swrtc; then
    # The same Pipecat pipeline on our transport: this tree's package over the release library.
    run_one pipecat-swrtc "$PIPECAT_SWRTC_PORT" env PYTHONPATH=python \
        SMALLWEBRTC_LIB=target/release/libsmallwebrtc.so "$VENV/bin/python" \
        python/examples/pipecat_echo_bot.py --addr "127.0.0.1:$PIPECAT_SWRTC_PORT" --no-video \
        --no-rtvi "${PEER_CAPS[@]}"
fi

# --- the table -------------------------------------------------------------------------------
echo
echo "== scale: server pinned to one core, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(( $(date +%s) - start )) s"
if want smallwebrtc && want pipecat; then
    "$LOADGEN" --table "$OUT/smallwebrtc.json" "$OUT/pipecat.json" | tee "$OUT/table.md"
fi
if want pipecat-swrtc && want pipecat; then
    echo
    echo "== Pipecat's pipeline on our transport (pipecat-swrtc) against Pipecat's own transport"
    "$LOADGEN" --table "$OUT/pipecat-swrtc.json" "$OUT/pipecat.json" | tee "$OUT/table-pipecat-swrtc.md"
fi
echo "raw numbers: $OUT/*.json (every step), logs in $OUT/"
