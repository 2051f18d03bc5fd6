#!/usr/bin/env bash
# Builds the fuzz targets (cargo-fuzz, libFuzzer, AddressSanitizer) and runs each one for
# a bounded time from a copy of its committed seed corpus, so the committed corpus never
# changes under CI. A crash fails the run and leaves its input under fuzz/artifacts/.
#
#   bash .ci/fuzz.sh [seconds per target]      (default 20)
#
# Needs a nightly toolchain (cargo-fuzz passes -Z flags) and cargo-fuzz; installs
# cargo-fuzz from crates.io when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-20}"
cd "$ROOT"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --quiet
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz() { cargo +nightly fuzz "$@"; }
else
    # The only toolchain is stable: let it accept the -Z flags.
    fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
fi
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^smallwebrtc-fuzz$')
fuzz build -O
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in $targets; do
    mkdir -p "$work/$t"
    cp fuzz/corpus/"$t"/* "$work/$t/"
    echo "fuzz: $t for ${secs} s" >&2
    # -rss_limit_mb: a target that holds memory without bound is a finding too.
    fuzz run -O "$t" "$work/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 2>&1 | grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_runs|==[0-9]+==|SUMMARY|Done)' || true
    # cargo fuzz exits non-zero on a crash; grep hides that, so check the artifacts.
    if ls fuzz/artifacts/"$t"/crash-* fuzz/artifacts/"$t"/leak-* fuzz/artifacts/"$t"/oom-* \
        fuzz/artifacts/"$t"/timeout-* >/dev/null 2>&1; then
        echo "fuzz: $t found a failing input:" >&2
        ls fuzz/artifacts/"$t" >&2
        exit 1
    fi
done
echo "fuzz: $(echo $targets | wc -w) targets, ${secs} s each, no failing input"
