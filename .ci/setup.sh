#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build smallwebrtc: cmake and nasm for the
# bundled codecs (Opus, OpenH264), libvpx for VP8, pkg-config and a C compiler; and, for the
# libdatachannel test peer (a dev-dependency, so cargo builds it for the examples too),
# OpenSSL's headers and libclang (bindgen).
# With --tests, also what the tests need: cargo-c (the install test), iproute2 (network namespaces),
# nftables (the NAT, STUN and ICE-TCP tests), coturn (STUN/TURN server), a Python venv
# with aiortc, a venv with Pipecat for the Python binding tests (.venv-pyx), Debian's
# Chromium with the npm packages of the browser tests, and GStreamer's WebRTC stack for
# Debian's python3 (tests/whip_gstreamer.rs).
# Idempotent and quick when everything is already there. Run as root or with sudo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tests=false
[ "${1:-}" = "--tests" ] && tests=true

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v nasm >/dev/null || need+=(nasm)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v cc >/dev/null || need+=(gcc)
command -v c++ >/dev/null || need+=(g++)
pkg-config --exists vpx 2>/dev/null || need+=(libvpx-dev)
pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev)
dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q "ok installed" || need+=(libclang-dev)
if $tests; then
    command -v ip >/dev/null || need+=(iproute2)
    command -v unshare >/dev/null || need+=(util-linux)
    # The NAT tests (tests/stun_nat.rs): nftables masquerade, Debian's coturn as STUN server.
    command -v nft >/dev/null || need+=(nftables)
    command -v turnserver >/dev/null || need+=(coturn)
    python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
    command -v valgrind >/dev/null || need+=(valgrind)
    command -v readelf >/dev/null || need+=(binutils)
    command -v openssl >/dev/null || need+=(openssl)
    /usr/bin/python3 -c "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0'); \
from gi.repository import Gst; Gst.init(None); \
assert all(Gst.ElementFactory.find(e) for e in ('webrtcbin', 'nicesrc', 'opusenc', 'vp8enc', 'rtpopuspay'))" \
        >/dev/null 2>&1 || need+=(python3-gst-1.0 gir1.2-gst-plugins-bad-1.0 gstreamer1.0-plugins-base
                                  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-nice)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if $tests; then
    # cargo-c, for the install test (`cargo cinstall`): Debian's is too old for this cargo,
    # and 0.10.24 is the newest that builds with rustc 1.95.
    if ! cargo cinstall --version >/dev/null 2>&1; then
        echo "setup: installing cargo-c (builds for a few minutes)" >&2
        cargo install cargo-c@0.10.24 --locked --quiet
    fi
    bash "$ROOT/.ci/setup-python.sh"
    bash "$ROOT/.ci/setup-pipecat.sh"
    if [ -f "$ROOT/.ci/setup-browser.sh" ]; then
        bash "$ROOT/.ci/setup-browser.sh"
    fi
fi
