#!/usr/bin/env bash
# Installs what the headless-browser tests (tests/browser_*.rs) need and
# bundles the official Pipecat client page:
#   - Debian's chromium (never a browser download), iproute2 and util-linux
#     (`ip`, `unshare`: the tests run inside a loopback-only network namespace);
#   - Node.js >= 20 and npm (Debian's packages when absent);
#   - the npm packages pinned in tests/browser/package-lock.json (`npm ci`):
#     playwright-core, esbuild, @pipecat-ai/client-js,
#     @pipecat-ai/small-webrtc-transport;
#   - tests/browser/dist/ (esbuild bundle of the official client).
# Idempotent and quick when everything is there. Needs root (or sudo) for apt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/tests/browser"
log() { echo "setup-browser: $*" >&2; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v ip >/dev/null || need+=(iproute2)
command -v unshare >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
    log "Node.js $(node --version) is too old: playwright-core needs >= 20"
    exit 1
fi

# npm ci only when node_modules was not installed from the current lock file.
want="$(sha256sum "$DIR/package-lock.json" | cut -d' ' -f1)"
stamp="$DIR/node_modules/.swrtc-lock.sha256"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "npm ci in tests/browser"
    (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" > "$stamp"
fi

(cd "$DIR" && node build.mjs)
log "ready: $(/usr/bin/chromium --version 2>/dev/null | head -1), node $(node --version), $(cd "$DIR" && node -p 'require("playwright-core/package.json").name + " " + require("playwright-core/package.json").version')"
