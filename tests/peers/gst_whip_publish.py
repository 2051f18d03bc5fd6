#!/usr/bin/env python3
"""A WHIP publisher on GStreamer's WebRTC stack (webrtcbin, libnice, GStreamer's
Opus and VP8 encoders and RTP payloaders): a GStreamer implementation of
everything below the HTTP exchange, none of it ours.

    python3 gst_whip_publish.py URL [--hz F] [--seconds S] [--token T] [--rsa]

Builds `audiotestsrc freq=F ! opusenc ! rtpopuspay` and `videotestsrc ! vp8enc
! rtpvp8pay` into a sendonly webrtcbin, waits for ICE gathering to complete,
POSTs the offer to URL (application/sdp, the WHIP exchange of RFC 9725: 201,
Location, the answer), applies the answer and streams for S seconds (default
20, or until stdin closes), then DELETEs the session. Prints one JSON line
per step on stdout ({"event": "answered", "location": ...}, {"event":
"ice", "state": ...}, {"event": "deleted", "status": ...}); logs on stderr.
GStreamer 1.22 makes an RSA DTLS certificate, which the server's DTLS
(ECDSA client certificates only) refuses with a handshake failure; so the
publisher gets an ECDSA P-256 certificate (made with the openssl command) on
its dtlssrtpdec elements unless --rsa keeps GStreamer's own.
Needs Debian's python3-gst-1.0, openssl, gir1.2-gst-plugins-bad-1.0,
gstreamer1.0-plugins-{base,good,bad} and gstreamer1.0-nice. Exit status 0
when the exchange succeeded and ICE connected.
"""
import argparse
import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402


def emit(**event):
    print(json.dumps(event), flush=True)


def log(*parts):
    print("gst_whip_publish:", *parts, file=sys.stderr, flush=True)


def ecdsa_pem():
    """A self-signed ECDSA P-256 certificate and its key, in PEM, and the certificate's
    SHA-256 fingerprint."""
    out = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", "/CN=gst-whip-publish", "-days", "2", "-keyout", "/dev/stdout",
         "-out", "/dev/stdout"],
        check=True, capture_output=True, text=True)
    # The certificate first: webrtcbin takes the SDP fingerprint from the first PEM block.
    blocks = out.stdout.split("-----BEGIN ")
    cert = [b for b in blocks if b.startswith("CERTIFICATE")]
    key = [b for b in blocks if b.startswith("PRIVATE KEY")]
    pem = "".join("-----BEGIN " + b for b in cert + key)
    fp = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
                        input=pem, check=True, capture_output=True, text=True).stdout
    return pem, fp.strip().split("=", 1)[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--hz", type=float, default=440.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--token")
    ap.add_argument("--rsa", action="store_true")
    args = ap.parse_args()

    Gst.init(None)
    pipeline = Gst.parse_launch(
        "webrtcbin name=pub bundle-policy=max-bundle "
        f"audiotestsrc is-live=true wave=sine freq={args.hz} volume=0.3 "
        "! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=1 "
        "! opusenc ! rtpopuspay pt=111 "
        "! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! pub. "
        "videotestsrc is-live=true pattern=ball "
        "! video/x-raw,width=320,height=240,framerate=25/1 ! videoconvert "
        "! vp8enc deadline=1 keyframe-max-dist=25 ! rtpvp8pay pt=96 "
        "! application/x-rtp,media=video,encoding-name=VP8,payload=96 ! pub. "
    )
    webrtc = pipeline.get_by_name("pub")
    if not args.rsa:
        pem, fingerprint = ecdsa_pem()

        def on_element(_bin, _sub, element):
            # webrtcbin creates its DTLS elements itself; the certificate must be set
            # before their connection starts.
            if element.get_factory() and element.get_factory().get_name() == "dtlssrtpdec":
                element.set_property("pem", pem)
        webrtc.connect("deep-element-added", on_element)
        # And those it made while the pipeline was parsed.
        it = webrtc.iterate_recurse()
        while True:
            res, element = it.next()
            if res != Gst.IteratorResult.OK:
                break
            on_element(None, None, element)
    loop = GLib.MainLoop()
    state = {"ok": False, "location": None, "failed": None}

    def fail(why):
        log(why)
        state["failed"] = why
        emit(event="error", error=why)
        loop.quit()

    def request(method, url, body=None, content_type=None):
        req = urllib.request.Request(url, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        if args.token:
            req.add_header("Authorization", f"Bearer {args.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def post_offer():
        offer = webrtc.get_property("local-description").sdp.as_text()
        if not args.rsa:
            # GStreamer 1.22 hashes every base64 line of the PEM (key included) for the
            # SDP fingerprint; the certificate's own is what the peer checks.
            offer = re.sub(r"a=fingerprint:\S+ \S+", f"a=fingerprint:sha-256 {fingerprint}", offer)
        status, headers, body = request("POST", args.url, offer.encode(), "application/sdp")
        if status != 201:
            return fail(f"POST {args.url}: {status} {body[:300]!r}")
        location = urllib.parse.urljoin(args.url, headers.get("Location", ""))
        state["location"] = location
        emit(event="answered", status=status, location=location,
             content_type=headers.get("Content-Type"), etag=headers.get("ETag"))
        ok, sdp = GstSdp.SDPMessage.new_from_text(body.decode())
        if ok != GstSdp.SDPResult.OK:
            return fail("the answer does not parse")
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        webrtc.emit("set-remote-description", answer, None)

    def on_gathering(element, _pspec):
        if element.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            # The HTTP request blocks: off the streaming thread, onto the main loop.
            GLib.idle_add(lambda: post_offer() and False)

    def on_ice(element, _pspec):
        s = element.get_property("ice-connection-state")
        emit(event="ice", state=s.value_nick)
        if s in (GstWebRTC.WebRTCICEConnectionState.CONNECTED,
                 GstWebRTC.WebRTCICEConnectionState.COMPLETED):
            state["ok"] = True
        elif s == GstWebRTC.WebRTCICEConnectionState.FAILED:
            GLib.idle_add(lambda: fail("ICE failed") and False)

    def on_offer(promise, _element, _data):
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        webrtc.emit("set-local-description", offer, None)

    def on_negotiation_needed(element):
        promise = Gst.Promise.new_with_change_func(on_offer, element, None)
        element.emit("create-offer", None, promise)

    webrtc.connect("on-negotiation-needed", on_negotiation_needed)
    webrtc.connect("notify::ice-gathering-state", on_gathering)
    webrtc.connect("notify::ice-connection-state", on_ice)
    bus = pipeline.get_bus()
    bus.add_signal_watch()

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            fail(f"pipeline error: {err.message} ({dbg})")
    bus.connect("message", on_message)

    # Sendonly before negotiation starts: WHIP publishes only.
    i = 0
    while (t := webrtc.emit("get-transceiver", i)) is not None:
        t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        i += 1
    pipeline.set_state(Gst.State.PLAYING)
    GLib.timeout_add(int(args.seconds * 1000), lambda: loop.quit() or False)
    # The test ends the publisher by closing stdin.
    threading.Thread(target=lambda: (sys.stdin.read(), GLib.idle_add(loop.quit)), daemon=True).start()
    loop.run()

    if state["location"]:
        status, _, _ = request("DELETE", state["location"])
        emit(event="deleted", status=status)
    pipeline.set_state(Gst.State.NULL)
    sys.exit(0 if state["ok"] and not state["failed"] else 1)


if __name__ == "__main__":
    main()
