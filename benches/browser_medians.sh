#!/bin/sh
# Chromium side of the signalling end-to-end benchmark (the aiortc side is
# `cargo bench --bench signalling_e2e`): builds the release echo example and the
# official-client bundle, then, in a network namespace with only loopback (as
# tests/browser/harness.rs does; needs root or CAP_SYS_ADMIN for `unshare -n`),
# starts the echo example on 127.0.0.1 and runs `tests/browser/repeat.mjs N` for
# both drivers against it: the official Pipecat client (camera on) and the
# built-in page (`?cam=1`), with the same arguments as the browser tests. Prints
# each repeat.mjs JSON line, then a table of the medians (ms): POST → answer,
# → ICE connected, → data channel open, → first echoed audio (first non-silent
# remote audio), the echo round trip the page measures (median burst lag), and
# the ICE RTT from getStats. Per-run timings go to stderr.
#
#   benches/browser_medians.sh [N]        # N runs per driver, default 10
#
# Prerequisites: .ci/setup-browser.sh (chromium, npm ci in tests/browser).
set -eu
runs=${1:-10}
cd "$(dirname "$0")/.."
cargo build --release --example echo --quiet
(cd tests/browser && node build.mjs >/dev/null)

exec unshare -n sh -c '
set -eu
runs=$1
ip link set lo up
tmp=$(mktemp -d)
target/release/examples/echo --addr 127.0.0.1:0 >"$tmp/echo.log" 2>&1 &
echo_pid=$!
trap '\''kill "$echo_pid" 2>/dev/null || true; wait "$echo_pid" 2>/dev/null || true; rm -rf "$tmp"'\'' EXIT
url=""
tries=0
while [ -z "$url" ]; do
  url=$(grep -o "http://127\.0\.0\.1:[0-9]*" "$tmp/echo.log" | head -n 1 || true)
  [ -n "$url" ] && break
  tries=$((tries + 1))
  if [ "$tries" -gt 300 ] || ! kill -0 "$echo_pid" 2>/dev/null; then
    echo "the echo example printed no URL:" >&2
    cat "$tmp/echo.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "echo example (release) at $url; loopback-only namespace; $runs runs per driver; load average $(cut -d" " -f1-3 /proc/loadavg)"
status=0
for spec in "official_client.mjs --expect-video" "builtin_page.mjs --query cam=1 --expect-video"; do
  set -- $spec
  driver=$1
  shift
  echo "== repeat.mjs $runs $driver" >&2
  node tests/browser/repeat.mjs "$runs" "$driver" "$url" --timeout 90 "$@" >"$tmp/$driver.json" || status=1
  cat "$tmp/$driver.json"
done
echo
printf "%-30s %16s %16s\n" "Chromium, medians (ms)" "official client" "built-in page"
for key in postToAnswerMs postToIceConnectedMs postToDcOpenMs postToFirstEchoedAudioMs echoRoundTripMs iceRttMs; do
  a=$(jq -r --arg k "$key" "if \$k == \"iceRttMs\" then .iceRttMsMedian else .medians[\$k] end // \"-\"" "$tmp/official_client.mjs.json" 2>/dev/null || echo -)
  b=$(jq -r --arg k "$key" "if \$k == \"iceRttMs\" then .iceRttMsMedian else .medians[\$k] end // \"-\"" "$tmp/builtin_page.mjs.json" 2>/dev/null || echo -)
  case $key in
    postToAnswerMs) name="POST -> answer" ;;
    postToIceConnectedMs) name="POST -> ICE connected" ;;
    postToDcOpenMs) name="POST -> data channel open" ;;
    postToFirstEchoedAudioMs) name="POST -> first echoed audio" ;;
    echoRoundTripMs) name="echo round trip" ;;
    iceRttMs) name="ICE RTT (getStats)" ;;
  esac
  printf "%-30s %16s %16s\n" "$name" "$a" "$b"
done
for d in official_client.mjs builtin_page.mjs; do
  jq -r "\"\(.driver): \(.passed)/\(.runs) runs passed\"" "$tmp/$d.json" 2>/dev/null || echo "$d: no result"
done
exit $status
' sh "$runs"
