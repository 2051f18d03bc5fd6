#!/usr/bin/env python3
"""A Peer with our own signalling and the pull API, against aiortc in this process over
127.0.0.1: answer, connect, messages both ways (text and binary) through poll_event, the
mic read as 20 ms frames at its tone's frequency, written audio heard by aiortc at its
frequency, camera frames read, stats, bad input as clear errors, and Python exceptions in
callbacks that never reach C. Run by tests/python_bindings.rs; prints
"test_peer: all passed" at the end.
"""

import asyncio
import fractions
import json
import logging
import math
import sys
import urllib.error
import urllib.request

import aioice.ice
import numpy as np
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from av import AudioFrame as AvAudioFrame

import smallwebrtc as swrtc

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []  # loopback
RATE = 48000


class Tone(AudioStreamTrack):
    """A 440 Hz sine at -20 dBFS, 20 ms frames in real time."""

    def __init__(self, hz: float):
        super().__init__()
        self.hz, self.n = hz, 0

    async def recv(self):
        t = (self.n + np.arange(960)) / RATE
        await asyncio.sleep(0.02)
        pcm = (3277 * np.sin(2 * math.pi * self.hz * t)).astype(np.int16)
        frame = AvAudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.n, fractions.Fraction(1, RATE)
        self.n += 960
        return frame


def freq(pcm: np.ndarray, rate: int) -> float:
    """Rising zero crossings per second of a mono int16 signal."""
    x = pcm.astype(np.int32)
    return float(np.sum((x[:-1] < 0) & (x[1:] >= 0))) * rate / len(x)


async def off_loop(fn, *args):
    """Runs a blocking call on a thread, so aiortc on this loop keeps going."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def wait_event(peer: swrtc.Peer, pred, what: str):
    for _ in range(100):
        ev = await off_loop(peer.poll_event, 0.2)
        if ev is not None and pred(ev):
            return ev
    raise AssertionError(f"no {what}")


async def main() -> None:
    pc = RTCPeerConnection()
    pc.addTrack(Tone(440))
    pc.addTrack(VideoStreamTrack())
    channel = pc.createDataChannel("chat")
    got: asyncio.Queue = asyncio.Queue()
    channel.on("message", got.put_nowait)
    remote_audio: asyncio.Future = asyncio.get_running_loop().create_future()
    pc.on("track", lambda t: t.kind == "audio" and remote_audio.set_result(t))
    opened = asyncio.Event()
    channel.on("open", opened.set)
    await pc.setLocalDescription(await pc.createOffer())

    cfg = swrtc.PeerConfig(bind_ip="127.0.0.1", audio_in_sample_rate=RATE,
                           audio_out_sample_rate=RATE, video_in_enabled=True)
    peer = swrtc.Peer(cfg)
    answer = peer.handle_offer(pc.localDescription.sdp)
    assert answer.startswith("v=0"), answer[:40]
    peer.add_ice_candidate("")  # end of candidates
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await asyncio.wait_for(opened.wait(), 15)
    peer.connect()
    await wait_event(peer, lambda e: e == swrtc.StateEvent(swrtc.PeerState.CONNECTED), "CONNECTED")
    assert peer.state == swrtc.PeerState.CONNECTED

    # Messages both ways.
    channel.send('{"hello": "python"}')
    ev = await wait_event(peer, lambda e: isinstance(e, swrtc.MessageEvent), "message")
    assert (ev.text, ev.binary) == ('{"hello": "python"}', False), ev
    peer.send_message('{"from": "peer"}')
    peer.send_message(b"\x00\x01\x02")
    received = []
    while len(received) < 2:  # the library's own signalling messages aside
        m = await asyncio.wait_for(got.get(), 10)
        if not (isinstance(m, str) and '"signalling"' in m):
            received.append(m)
    assert received == ['{"from": "peer"}', b"\x00\x01\x02"], received
    print("messages: both ways, text and binary")

    # The mic, pulled: 20 ms frames at 48 kHz carrying the 440 Hz tone.
    frames = []
    while len(frames) < 75:
        f = await off_loop(peer.read_audio, 0.5)
        if f is not None:
            frames.append(f)
    assert all(f.samples == 960 and f.channels == 1 for f in frames)
    assert frames[-1].pts > frames[0].pts
    pcm = np.concatenate([f.numpy()[:, 0] for f in frames[25:]])
    hz = freq(pcm, RATE)
    assert abs(hz - 440) < 20, hz
    print(f"read_audio: {len(frames)} frames, tone at {hz:.0f} Hz")

    # Written audio: an 880 Hz numpy tone, 2 s at once, heard by aiortc.
    t = np.arange(2 * RATE) / RATE
    peer.write_audio((3277 * np.sin(2 * math.pi * 880 * t)).astype(np.int16))
    track = await asyncio.wait_for(remote_audio, 10)
    heard, skipped = [], 0
    while len(heard) < 40:  # aiortc queued the silence sent so far: skip to the tone
        fr = await asyncio.wait_for(track.recv(), 5)
        a = fr.to_ndarray().reshape(-1, len(fr.layout.channels))[:, 0]
        if heard or np.abs(a).max() > 1000:
            heard.append(a)
        else:
            skipped += 1
            assert skipped < 2000, "the written tone never arrived"
    pcm = np.concatenate(heard[5:])
    hz = freq(pcm, fr.sample_rate)
    assert abs(hz - 880) < 40 and np.abs(pcm).max() > 1000, (hz, np.abs(pcm).max())
    print(f"write_audio: aiortc hears {hz:.0f} Hz")
    peer.clear_audio()

    # The camera, pulled.
    v = None
    for _ in range(20):
        v = await off_loop(peer.read_video, swrtc.VideoSource.CAMERA, 0.5)
        if v is not None:
            break
    assert v is not None and (v.width, v.height) == (640, 480), v
    assert v.numpy().shape == (480, 640, 3)
    print("read_video: 640x480")

    s, a, vs = peer.stats(), peer.audio_stats(), peer.video_stats()
    assert s.messages_in >= 1 and s.messages_out >= 2 and s.datagrams_in > 0, s
    assert a.in_packets_decoded > 50 and a.out_packets_sent > 50, a
    assert vs.in_frames_decoded[swrtc.VideoSource.CAMERA] > 0, vs
    print(f"stats: {s.datagrams_in} datagrams in, {a.out_packets_sent} audio packets out")

    # Bad input: clear errors, nothing crashes.
    for bad, code in ((lambda: peer.write_audio(b"\x00" * 3), swrtc.Result.INVALID_ARGUMENT),
                      (lambda: peer.send_message(b"x" * 70000), swrtc.Result.TOO_LARGE),
                      (lambda: peer.add_ice_candidate("nonsense"), swrtc.Result.INVALID_CANDIDATE)):
        try:
            bad()
            raise AssertionError(f"no error for {code.name}")
        except swrtc.SmallWebRTCError as e:
            assert e.code == code, e

    # A callback that raises: logged, never into C; the next events still arrive.
    calls = []

    def raising(ev):
        calls.append(ev)
        raise RuntimeError("a bug in the app's callback")

    logging.getLogger("smallwebrtc").setLevel(logging.CRITICAL)  # the expected tracebacks
    peer.set_on_event(raising)
    peer.set_audio_callback(lambda f: 1 / 0)
    for i in range(3):
        channel.send(f'"n{i}"')
    for _ in range(100):
        if len(calls) >= 3:
            break
        await asyncio.sleep(0.05)
    assert [c.text for c in calls[:3]] == ['"n0"', '"n1"', '"n2"'], calls
    peer.set_audio_callback(None)
    peer.set_on_event(None)

    peer.close()
    try:
        peer.connect()
        raise AssertionError("a closed Peer accepted a call")
    except swrtc.SmallWebRTCError as e:
        assert e.code == swrtc.Result.CLOSED
    await pc.close()
    await server_limits()
    print(f"test_peer: all passed (library {swrtc.library_version()})")


async def server_limits() -> None:
    """ServerLimits reach the server: one connecting peer per address, so a second offer
    from the same address gets 503; a zero limit is refused with a clear error."""
    pc = RTCPeerConnection()
    pc.addTrack(Tone(440))
    await pc.setLocalDescription(await pc.createOffer())
    body = json.dumps({"sdp": pc.localDescription.sdp, "type": "offer"}).encode()
    cfg = swrtc.ServerConfig(addr="127.0.0.1:0", limits=swrtc.ServerLimits(
        max_connecting_peers_per_source=1, max_peers_per_source=1))
    server = swrtc.Server(cfg)

    def post() -> int:
        req = urllib.request.Request(f"{server.url}/api/offer", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    try:
        assert await off_loop(post) == 200
        assert await off_loop(post) == 503
    finally:
        server.close()
        await pc.close()
    try:
        swrtc.Server(swrtc.ServerConfig(addr="127.0.0.1:0",
                                        limits=swrtc.ServerLimits(max_peers=0)))
        raise AssertionError("a zero max_peers was accepted")
    except swrtc.SmallWebRTCError as e:
        assert e.code == swrtc.Result.INVALID_ARGUMENT and "max_peers" in str(e), e
    print("server limits: a second offer from one address gets 503; zero is refused")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())
