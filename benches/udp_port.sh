#!/usr/bin/env bash
# One UDP port for every peer against one socket per peer: the echo example at N voice
# sessions (default 100; the server's live-peer caps are lifted, since the generator's
# sessions all come from 127.0.0.1) driven by the load generator (benches/loadgen.rs), once with each
# peer on its own port and once with `--udp-port`, alternating, RUNS times. Prints the
# server's CPU per session-second and the echo latency of each run, the medians, and the
# ratio (shared / per-peer). With STRACE=1 it also counts the server's syscalls for
# STRACE_SECS in each mode (strace -c -f; strace slows the server, so those runs are not
# timed) and prints network syscalls per datagram. The shared port's reads and sends are
# batched (recvmmsg, UDP GSO); the echo example prints its counters at exit, from which
# each shared run also prints datagrams per receive and per send call (no strace there).
#
#   bash benches/udp_port.sh
#
# Settings (environment): N (sessions, 100), SECS (measured seconds per run, 20), RUNS (3),
# PORT (HTTP, 7880), UDP_PORT (the shared port, 7881), STRACE (1), STRACE_SECS (10),
# OUT (target/udp_port). The server runs on core 0, the generator on core 1 (loopback only).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N=${N:-100}
SECS=${SECS:-20}
RUNS=${RUNS:-3}
PORT=${PORT:-7880}
UDP_PORT=${UDP_PORT:-7881}
STRACE=${STRACE:-1}
STRACE_SECS=${STRACE_SECS:-10}
OUT=${OUT:-target/udp_port}
mkdir -p "$OUT"

echo "== building the echo example and the load generator (release)"
cargo build --release --example echo --bench loadgen --message-format=json-render-diagnostics \
    > "$OUT/build.json"
exe() {
    grep "\"name\":\"$1\"" "$OUT/build.json" | grep -o '"executable":"[^"]*"' | tail -n 1 \
        | cut -d'"' -f4
}
LOADGEN=$(exe loadgen)
ECHO=$(exe echo)

SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        # Under strace the server is strace's child: stop it, and strace writes its summary.
        local child
        child=$(pgrep -P "$SERVER_PID" || true)
        kill "${child:-$SERVER_PID}" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop_server EXIT

# start MODE [WRAPPER...]: the echo example on core 0, per-peer or shared port.
start() {
    local mode=$1
    shift
    local args=(--addr "127.0.0.1:$PORT" --max-peers 4000 --max-peers-per-source 4000)
    if [ "$mode" = shared ]; then
        args+=(--udp-port "$UDP_PORT")
    else
        args+=(--per-peer-ports)
    fi
    taskset -c 0 "$@" "$ECHO" "${args[@]}" > "$OUT/$mode.server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return
        fi
        sleep 0.1
    done
    echo "udp_port.sh: the echo example did not start ($mode)" >&2
    exit 1
}

# load MODE RUN: N sessions for SECS seconds; leaves $OUT/MODE.RUN.json.
load() {
    taskset -c 1 "$LOADGEN" --url "http://127.0.0.1:$PORT/api/offer" --pid "$SERVER_PID" \
        --label "$1" --steps "1,$N" --step-secs "$SECS" --refine 0 --single-trials 1 \
        --json "$OUT/$1.$2.json" > "$OUT/$1.$2.log" 2>&1
}

field() { # field FILE KEY: the KEY of the N-session step
    python3 - "$1" "$2" "$N" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
n = int(sys.argv[3])
steps = [s for s in d["steps"] if s["sessions"] == n]
print(steps[-1][sys.argv[2]] if steps else "nan")
EOF
}

# batching LOG: the shared port's syscall counters, from the echo example's exit line.
batching() {
    python3 - "$1" <<'EOF'
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith("shared UDP stats: ")]
if not line:
    sys.exit(0)
s = json.loads(line[-1].split(": ", 1)[1])
rx, tx = s["udp_datagrams_in"], s["udp_datagrams_out"]
calls = s["udp_recv_calls"] + s["udp_send_calls"]
print(f"          shared port: {rx} datagrams in / {s['udp_recv_calls']} receive calls "
      f"({rx / max(s['udp_recv_calls'], 1):.2f} per call), {tx} out / {s['udp_send_calls']} "
      f"send calls, {s['udp_send_dropped']} send drops; network syscalls per datagram "
      f"{calls / max(rx + tx, 1):.2f}")
EOF
}

for run in $(seq 1 "$RUNS"); do
    for mode in per-peer shared; do
        start "$mode"
        load "$mode" "$run"
        stop_server
        printf "%-9s run %d: %s cpu-s/session-s, echo latency median %s ms, %s of bursts back\n" \
            "$mode" "$run" "$(field "$OUT/$mode.$run.json" cpu_s_per_session_s)" \
            "$(field "$OUT/$mode.$run.json" latency_median_ms)" \
            "$(field "$OUT/$mode.$run.json" returned_frac)"
        if [ "$mode" = shared ]; then
            batching "$OUT/$mode.server.log"
        fi
    done
done

python3 - "$OUT" "$RUNS" "$N" <<'EOF'
import json, statistics, sys
out, runs, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def med(mode, key):
    vals = []
    for r in range(1, runs + 1):
        d = json.load(open(f"{out}/{mode}.{r}.json"))
        vals += [s[key] for s in d["steps"] if s["sessions"] == n][-1:]
    return statistics.median(vals)
a, b = med("per-peer", "cpu_s_per_session_s"), med("shared", "cpu_s_per_session_s")
print(f"median cpu-s/session-s at {n} sessions: per-peer {a:.5f}, shared {b:.5f}, "
      f"shared/per-peer {b / a:.3f}")
EOF

if [ "$STRACE" = 1 ] && command -v strace >/dev/null; then
    for mode in per-peer shared; do
        start "$mode" strace -c -f -o "$OUT/$mode.strace"
        taskset -c 1 "$LOADGEN" --url "http://127.0.0.1:$PORT/api/offer" --label "$mode" \
            --steps "1,$N" --step-secs "$STRACE_SECS" --refine 0 --single-trials 1 \
            > "$OUT/$mode.strace.log" 2>&1 || true
        stop_server
        python3 - "$OUT/$mode.strace" "$mode" "$OUT/$mode.server.log" <<'EOF'
import json, sys
calls, errors = {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    # % time, seconds, usecs/call, calls, [errors], syscall
    if len(f) in (5, 6) and f[3].isdigit() and f[-1].isidentifier() and f[-1] != "total":
        calls[f[-1]] = int(f[3])
        errors[f[-1]] = int(f[4]) if len(f) == 6 else 0
rx = ("recvfrom", "recvmsg", "recvmmsg")
tx = ("sendto", "sendmsg", "sendmmsg")
net = sum(calls.get(k, 0) for k in rx + tx)
# A recv that fails (EAGAIN: the socket is drained) moves no datagram. Per-peer sockets
# move one datagram per successful recvfrom/sendto; the shared port's batched calls move
# several, counted by the server itself (its exit line).
moved = sum(calls.get(k, 0) - errors.get(k, 0) for k in rx + tx)
for l in open(sys.argv[3]):
    if l.startswith("shared UDP stats: "):
        s = json.loads(l.split(": ", 1)[1])
        moved = s["udp_datagrams_in"] + s["udp_datagrams_out"]
polls = sum(v for k, v in calls.items() if k.startswith("epoll"))
print(f"{sys.argv[2]:9} syscalls: {net} network ({moved} datagrams moved), {polls} polls, "
      f"{sum(calls.values())} in all; network+poll syscalls per datagram "
      f"{(net + polls) / max(moved, 1):.2f}")
EOF
    done
fi
