#!/usr/bin/env python3
"""Echo bot on smallwebrtc from Python: each client's voice and camera come back, each app
message m comes back as {"echo": m}, RTVI client-ready gets bot-ready (so Pipecat's JS
client connects). No thread of ours: frames arrive on the library's workers, events on its
callback thread.

    python python/examples/echo_bot.py --addr 127.0.0.1:7860

Prints "open http://HOST:PORT/" once listening; stops on Ctrl-C or when stdin closes
(with --stdin).
"""

import argparse
import json
import logging
import sys
import threading

import smallwebrtc as swrtc

log = logging.getLogger("echo_bot")
peers: dict[str, swrtc.Peer] = {}  # live peers by pc_id; each leaves on its CLOSED
peers_lock = threading.Lock()


def reply(peer: swrtc.Peer, data: bytes, binary: bool) -> None:
    if binary:
        peer.send_message(data, binary=True)
        return
    try:
        msg = json.loads(data)
    except ValueError:
        msg = data.decode("utf-8", "replace")
    if isinstance(msg, dict) and msg.get("label") == "rtvi-ai" and msg.get("type") == "client-ready":
        ready = {"label": "rtvi-ai", "type": "bot-ready", "id": msg.get("id"),
                 "data": {"version": "1.0.0", "about": {"library": "smallwebrtc-python"}}}
        peer.send_message(json.dumps(ready))
        return
    peer.send_message(json.dumps({"echo": msg}))


def start(new: swrtc.NewPeer) -> None:
    """Runs on an HTTP thread before the answer goes out: installs callbacks, connects."""
    peer, pc_id = new.peer, new.pc_id

    def on_audio(frame: swrtc.AudioFrame) -> None:
        try:
            peer.write_audio(frame.pcm, timeout=0)  # a worker thread: never block here
        except swrtc.SmallWebRTCError as e:
            log.debug("%s: audio not echoed: %s", pc_id, e)

    def on_video(frame: swrtc.VideoFrame) -> None:
        try:
            peer.write_video(frame.rgb, frame.width, frame.height)
        except swrtc.SmallWebRTCError as e:
            log.debug("%s: video not echoed: %s", pc_id, e)

    def on_event(ev: swrtc.Event) -> None:
        if isinstance(ev, swrtc.MessageEvent):
            reply(peer, ev.data, ev.binary)
        elif isinstance(ev, swrtc.StateEvent):
            log.info("%s: %s", pc_id, ev.state.name)
            if ev.state == swrtc.PeerState.CLOSED:
                with peers_lock:
                    peers.pop(pc_id, None)
                peer.close()  # allowed from inside its own callback

    with peers_lock:
        peers[pc_id] = peer
    peer.set_audio_callback(on_audio)
    if peer.config.video_in_enabled:
        peer.set_video_callback(swrtc.VideoSource.CAMERA, on_video)
    peer.set_on_event(on_event)
    peer.connect()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default="127.0.0.1:7860")
    p.add_argument("--no-video", action="store_true", help="audio and messages only")
    p.add_argument("--stdin", action="store_true", help="stop when stdin closes")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    video = not args.no_video
    # 48 kHz mono both ways: frames go back unchanged, nothing resamples.
    peer_cfg = swrtc.PeerConfig(audio_in_sample_rate=48000, audio_out_sample_rate=48000,
                                video_in_enabled=video, video_out_enabled=video)
    server = swrtc.Server(swrtc.ServerConfig(addr=args.addr, peer=peer_cfg), on_peer=start)
    print(f"open {server.url}/", flush=True)
    try:
        if args.stdin:
            sys.stdin.read()
        else:
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        with peers_lock:
            live = list(peers.values())
        for peer in live:
            peer.close()


if __name__ == "__main__":
    main()
