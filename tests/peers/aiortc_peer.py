#!/usr/bin/env python3
"""An aiortc peer that behaves like Pipecat's JS SmallWebRTC client.

Driven by a test over stdin/stdout: one JSON command per line on stdin, one
JSON event per line on stdout (flushed per line). Logs go to stderr only.

Commands (unknown fields are ignored):
  {"cmd":"offer", "audio":true, "video":true, "screen":false, "label":"chat",
   "pings":true, "track_status":true, "tone_hz":1000, "tone_dbfs":-20,
   "host_addresses":["127.0.0.1"]}
      Creates a new RTCPeerConnection (closing any previous one) with
      transceivers audio sendrecv (mid 0), video sendrecv (mid 1) and, with
      screen, video sendonly (mid 2), plus a data channel `label`, then
      prints {"event":"offer","sdp":...,"pc":G} once ICE gathering is
      complete. G numbers the peer connections of this process (1, 2, ...);
      asynchronous events carry the "pc" they come from. Received-media
      stats restart with each new peer connection.
      audio/video false keep the transceiver but attach no track (like a
      client with mic/camera off). track_status: true sends the default
      trackStatus message after the channel opens, false sends nothing, an
      object is sent as the "message" of a signalling envelope.
      tone_hz 0 sends digital silence. audio_line false leaves out the audio
      transceiver (a video-only WHIP/WHEP offer). video_line false leaves out the video
      transceiver (an audio-only offer, like an ESP32's); direction "sendonly"
      (a WHIP publisher) or "recvonly" (a WHEP viewer: no tracks attached) sets
      the audio and camera transceivers' direction (default "sendrecv");
      datachannel false leaves out the data channel (WHIP/WHEP offers have none); channel_id N opens the
      data channel on SCTP stream N (in-band, as libpeer opens stream 0).
      ice_servers ["stun:IP:PORT", ...] gives the peer connection those STUN
      servers (default none), so its offer carries srflx candidates; an entry
      may also be {"urls": "turn:IP:PORT?transport=udp|tcp", "username": U,
      "credential": P} (a TURN server: relay candidates).
      ice_transport_policy "relay" gathers and uses relay candidates only.
      Video options: video_pattern "bars" (default: static colour bars),
      "noise" (grey with a centred block of seeded noise a quarter of each
      side, new each frame: fills any bitrate) or
      "swrtc" (the library's test pattern, src/media/video/pattern.rs: colour
      bars with a marker that moves 8 px per frame; frame index = frames sent
      so far + video_frame_offset); screen_pattern the same for the screen
      track, or [r,g,b] for a solid colour (screen_frame_offset likewise);
      video_size [w,h] (default [640,480]) and video_fps (default 30) for the
      "swrtc" and solid tracks; video_codec "VP8" or "H264" munges the offer
      of every video transceiver down to that codec (setCodecPreferences; RTX
      kept unless video_rtx is false). bundle_policy "balanced" or
      "max-bundle" (default: "max-bundle" with screen, else aiortc's
      "balanced"; aiortc's balanced policy gives the second video transceiver
      the first one's transport, which BUNDLE then discards, so the screen
      track never starts sending).
  {"cmd":"answer","sdp":...}   -> {"event":"answered","remote_candidates":N}
      N: the remote candidates aiortc took from the answer for the data
      channel's ICE transport.
  {"cmd":"renegotiate"}        -> {"event":"offer","sdp":...,"pc":G} (same pc)
  {"cmd":"send","text":...}    -> {"event":"sent"} (error event if not open)
  {"cmd":"set_tone","hz":440, "dbfs":-20} -> {"event":"tone_set"}
  {"cmd":"audio_stats"}        -> {"event":"audio_stats","frames":N,
                                   "sample_rate":R,"rms_dbfs":x,"freq_hz":f,
                                   "window_s":w}
      rms_dbfs: plain RMS of the last 2 s (mono mix) re 32768, floor -120,
      null before any audio; freq_hz: rising zero crossings / window_s.
      (The tone's -20 dBFS is its peak, so its RMS is -23 dBFS; aiortc's
      Opus encoder upmixes mono to stereo at -3 dB, so aiortc's own tone
      arrives at about -26 dBFS RMS at a decoder.)
  {"cmd":"video_stats"}        -> {"event":"video_stats","frames":N,
                                   "width":W,"height":H}
  {"cmd":"latency", "reset":false} -> {"event":"latency","rtts_ms":[...],
                                   "bursts_sent":N,"onsets":M,"unmatched":K}
      Only with the offer option "bursts": {"hz":1000,"dbfs":-20,
      "burst_ms":60,"period_ms":500}: the mic track then sends tone bursts
      (starting on 20 ms frame boundaries) with digital silence between, and
      the received audio goes through an onset detector (mono mix above
      "threshold" (default 300 of 32768) after at least 100 ms below it).
      Each onset is matched to the last burst sent before it (within one
      period); rtts_ms are those round trips, on this process's monotonic
      clock: (frame received + onset offset) - (frame handed to the sender +
      onset offset). reset clears the list after answering. Without
      "bursts" nothing changes.
  Offer option "first_audio_threshold": T (0..32767) -> once per peer
      connection, {"event":"first_audio","pc":G,"frames":N,"peak":P} when
      the first received audio frame with a sample of magnitude >= T
      arrives (N: audio frames received so far, that one included; P: its
      peak). Without the option nothing changes.
  {"cmd":"video_sent"}         -> {"event":"video_sent","camera":N,"screen":M}
      Frames each outgoing video track has handed to its sender so far (null
      for a track that is absent).
  {"cmd":"video_pause","paused":true} -> {"event":"video_paused","paused":b,
                                   "camera":N,"screen":M}
      Stops (or resumes) producing frames on the "swrtc"/solid tracks; the
      counts are final while paused.
  {"cmd":"video_resize","size":[w,h]} -> {"event":"video_resized","size":[w,h]}
      The camera's "swrtc" track sends frames of the new size from its next frame
      on (aiortc's encoder restarts at the new size, as a browser's does when it
      changes camera resolution mid-call).
  {"cmd":"sender_codecs"}      -> {"event":"sender_codecs","transceivers":
                                   [{"mid","kind","codecs":[mime,...],
                                     "direction","current_direction"}]}
      The negotiated codecs per transceiver, in order: a sender sends the first.
  {"cmd":"ping"}               -> {"event":"pong"}
  {"cmd":"close"}              -> closes the pc, {"event":"closed"}, exit 0
Asynchronous events: {"event":"channel_open","label"}, channel_close,
{"event":"message","text","label"} (every text on any channel, unfiltered;
binary ones decoded with "binary":true), {"event":"ice_state","state"},
{"event":"connection_state","state"}, {"event":"track","kind"},
track_ended, and {"event":"error","message"} ("cmd" names the failed
command). Every failure is an error event; the process keeps running until
"close" or until stdin closes (then it closes the pc and exits 0).
"""

import asyncio
import fractions
import json
import logging
import math
import os
import sys
import threading
import time

import av
import numpy as np

import aioice.ice
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError

log = logging.getLogger("aiortc_peer")

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
AUDIO_WINDOW_S = 2.0
COMMAND_TIMEOUT_S = 30.0

# --- loopback-only ICE -------------------------------------------------------
# aioice gathers host candidates from aioice.ice.get_host_addresses(), which
# drops 127.0.0.1 and ::1. gather_candidates() looks that name up in the
# aioice.ice module namespace at call time, so replacing the module attribute
# makes every Connection gather exactly the addresses we choose (loopback by
# default). Together with iceServers=[] (no STUN/TURN; aiortc otherwise uses a
# public STUN server by default) all ICE traffic stays on these addresses.
HOST_ADDRESSES = ["127.0.0.1"]

if not hasattr(aioice.ice, "get_host_addresses"):
    raise SystemExit(
        "aioice.ice.get_host_addresses not found: the loopback patch does not "
        "fit this aioice version; pin the one in tests/peers/requirements.txt"
    )


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list:
    return [a for a in HOST_ADDRESSES if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


aioice.ice.get_host_addresses = _host_addresses


# --- output ------------------------------------------------------------------
def _ice_server(entry) -> RTCIceServer:
    """An ice_servers entry: a URL string, or {"urls", "username", "credential"}."""
    if isinstance(entry, str):
        return RTCIceServer(urls=entry)
    return RTCIceServer(urls=entry["urls"], username=entry.get("username"),
                        credential=entry.get("credential"))


def emit(event: str, **fields) -> None:
    obj = {"event": event}
    obj.update(fields)
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# --- media sources -----------------------------------------------------------
class ToneTrack(MediaStreamTrack):
    """Sine tone (or silence): 20 ms s16 mono 48 kHz frames, paced in real time."""

    kind = "audio"

    def __init__(self, hz: float = 1000.0, dbfs: float = -20.0):
        super().__init__()
        self.hz = float(hz)
        self.dbfs = float(dbfs)
        self._phase = 0.0
        self._pts = 0
        self._start = None

    def set_tone(self, hz: float, dbfs: float) -> None:
        self.hz = float(hz)
        self.dbfs = float(dbfs)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)

        if self.hz > 0:
            # Peak amplitude dbfs relative to full scale (-20 dBFS -> 0.1 FS).
            amp = 32767.0 * 10 ** (self.dbfs / 20.0)
            step = 2.0 * math.pi * self.hz / SAMPLE_RATE
            phases = self._phase + step * np.arange(FRAME_SAMPLES)
            samples = np.round(amp * np.sin(phases)).astype(np.int16)
            self._phase = float((self._phase + step * FRAME_SAMPLES) % (2.0 * math.pi))
        else:
            samples = np.zeros(FRAME_SAMPLES, dtype=np.int16)

        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._pts += FRAME_SAMPLES
        return frame


class BurstTrack(ToneTrack):
    """ToneTrack variant for latency probes: `burst_ms` of tone every
    `period_ms`, digital silence between; bursts start on frame boundaries.
    Records the monotonic time each burst's first frame is handed over."""

    def __init__(self, hz: float, dbfs: float, burst_ms: float, period_ms: float):
        super().__init__(hz, dbfs)
        self.burst_frames = max(1, int(round(burst_ms / 20.0)))
        self.period_frames = max(self.burst_frames + 1, int(round(period_ms / 20.0)))
        self.sent_onsets = []  # monotonic seconds, newest last
        self._index = 0

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        k = self._index % self.period_frames
        self._index += 1
        if k >= self.burst_frames:
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, FRAME_SAMPLES), dtype=np.int16), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = self._pts - FRAME_SAMPLES
            frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        elif k == 0:
            self._phase = 0.0  # every burst starts at zero phase
            self.sent_onsets.append(time.monotonic())
            if len(self.sent_onsets) > 1000:
                del self.sent_onsets[:500]
        return frame


class LatencyProbe:
    """Onset detector on received audio, matched against BurstTrack's sends."""

    QUIET_S = 0.1

    def __init__(self, track: BurstTrack, threshold: float, period_s: float):
        self.track = track
        self.threshold = float(threshold)
        self.period_s = period_s
        self.rtts_ms = []
        self.onsets = 0
        self.unmatched = 0
        self._quiet_since = None  # stream time (s) since the signal stays below threshold
        self._stream_t = 0.0

    def add(self, frame: av.AudioFrame, arrived: float) -> None:
        arr = frame.to_ndarray()
        channels = len(frame.layout.channels)
        if frame.format.is_planar:
            mono = arr.astype(np.float32).mean(axis=0)
        else:
            mono = arr.reshape(-1, channels).astype(np.float32).mean(axis=1)
        rate = frame.sample_rate or SAMPLE_RATE
        loud = np.nonzero(np.abs(mono) >= self.threshold)[0]
        t0 = self._stream_t
        self._stream_t += len(mono) / rate
        if len(loud) == 0:
            if self._quiet_since is None:
                self._quiet_since = t0
            return
        first = int(loud[0])
        quiet_before = self._quiet_since is not None and (
            t0 + first / rate - self._quiet_since >= self.QUIET_S)
        # Quiet again only after the last loud sample of this frame.
        last = int(loud[-1])
        self._quiet_since = t0 + (last + 1) / rate
        if not quiet_before:
            return
        self.onsets += 1
        onset = arrived + first / rate
        sent = [t for t in self.track.sent_onsets if t <= onset]
        if not sent or onset - sent[-1] > self.period_s:
            self.unmatched += 1
            return
        self.rtts_ms.append(round((onset - sent[-1]) * 1000.0, 3))


def _colour_bars_yuv420p(width: int, height: int) -> np.ndarray:
    # 75 % SMPTE-like bars: white, yellow, cyan, green, magenta, red, blue, black.
    bars = [
        (191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0),
        (191, 0, 191), (191, 0, 0), (0, 0, 191), (0, 0, 0),
    ]
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    for i, colour in enumerate(bars):
        rgb[:, i * width // len(bars):(i + 1) * width // len(bars)] = colour
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    return frame.to_ndarray()


class ColourBarsTrack(VideoStreamTrack):
    """Synthetic 640x480 colour bars at 30 fps."""

    def __init__(self, width: int = 640, height: int = 480):
        super().__init__()
        self._yuv = _colour_bars_yuv420p(width, height)
        self.sent = 0  # frames handed to the sender

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self._yuv, format="yuv420p")
        frame.pts = pts
        frame.time_base = time_base
        self.sent += 1
        return frame


# The library's synthetic test picture, ported exactly from
# src/media/video/pattern.rs (same colours, bar layout and marker motion).
SWRTC_BARS = np.array([
    (191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0),
    (191, 0, 191), (191, 0, 0), (0, 0, 191), (0, 0, 0),
], dtype=np.uint8)
SWRTC_BAND = (32, 32, 32)
SWRTC_MARKER = (235, 235, 235)


def swrtc_marker_size(height: int) -> int:
    return max(height // 8, 2)


def swrtc_marker_position(width: int, height: int, frame: int) -> tuple:
    size = swrtc_marker_size(height)
    band_top = height * 3 // 4
    span = max(max(width - size, 0), 1)
    x = frame * 8 % span
    y = band_top + max(height - band_top - size, 0) // 2
    return x, y


def swrtc_pattern_rgb(width: int, height: int, frame: int) -> np.ndarray:
    band_top = height * 3 // 4
    size = swrtc_marker_size(height)
    mx, my = swrtc_marker_position(width, height, frame)
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    bar = np.arange(width) * len(SWRTC_BARS) // width
    rgb[:band_top] = SWRTC_BARS[bar][np.newaxis, :, :]
    rgb[band_top:] = SWRTC_BAND
    rgb[my:my + size, mx:mx + size] = SWRTC_MARKER
    return rgb


class PatternTrack(MediaStreamTrack):
    """The library's test pattern (pattern "swrtc"), seeded random noise ("noise":
    a new picture each frame, which no encoder compresses, so video takes all the
    bitrate it is given) or a solid colour ([r,g,b]), paced at `fps`. Counts the frames handed to the sender (`sent`); frame i
    shows pattern frame `offset + i`. Can be paused (recv then waits)."""

    kind = "video"

    def __init__(self, pattern="swrtc", width: int = 640, height: int = 480,
                 fps: float = 30.0, offset: int = 0):
        super().__init__()
        self.width, self.height = int(width), int(height)
        self.fps = float(fps) if fps else 30.0
        self.offset = int(offset)
        self.sent = 0
        self._solid = None
        self._noise = None
        if pattern == "noise":
            self._noise = np.random.default_rng(0x5eed)
        elif isinstance(pattern, (list, tuple)):
            rgb = np.empty((self.height, self.width, 3), dtype=np.uint8)
            rgb[:, :] = [int(c) for c in pattern[:3]]
            self._solid = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p").to_ndarray()
        elif pattern != "swrtc":
            raise ValueError(f"unknown video pattern {pattern!r}")
        self._next = None
        self._resumed = asyncio.Event()
        self._resumed.set()

    def resize(self, width: int, height: int) -> None:
        if self._solid is not None:
            raise RuntimeError("only the 'swrtc' pattern can change size")
        self.width, self.height = int(width), int(height)

    def set_paused(self, paused: bool) -> None:
        if paused:
            self._resumed.clear()
        else:
            self._resumed.set()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        while True:
            if not self._resumed.is_set():
                await self._resumed.wait()
                self._next = None  # no burst to catch up after a pause
            now = time.monotonic()
            due = now if self._next is None else self._next + 1.0 / self.fps
            if due > now:
                await asyncio.sleep(due - now)
            if self._resumed.is_set():  # not paused while waiting: this frame counts
                self._next = due
                break
        if self._solid is not None:
            frame = av.VideoFrame.from_ndarray(self._solid, format="yuv420p")
        elif self._noise is not None:
            # Grey, with fresh noise in a centred block a quarter of each side.
            planes = np.full((self.height * 3 // 2, self.width), 128, dtype=np.uint8)
            bw, bh = self.width // 4 & ~1, self.height // 4 & ~1
            x, y = (self.width - bw) // 2 & ~1, (self.height - bh) // 2 & ~1
            planes[y:y + bh, x:x + bw] = self._noise.integers(0, 256, (bh, bw),
                                                              dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        else:
            rgb = swrtc_pattern_rgb(self.width, self.height, self.offset + self.sent)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = int(round(self.sent * 90000 / self.fps))
        frame.time_base = fractions.Fraction(1, 90000)
        self.sent += 1
        return frame


def _video_track(cmd: dict, pattern_key: str, offset_key: str):
    pattern = cmd.get(pattern_key, "bars")
    if pattern in (None, "bars"):
        return ColourBarsTrack()
    size = cmd.get("video_size") or [640, 480]
    return PatternTrack(pattern, size[0], size[1], cmd.get("video_fps", 30),
                        cmd.get(offset_key, 0))


def _codec_preferences(name: str, rtx: bool) -> list:
    want = "video/" + name.lower()
    caps = RTCRtpSender.getCapabilities("video").codecs
    chosen = [c for c in caps if c.mimeType.lower() == want]
    if not chosen:
        raise ValueError(f"aiortc has no video codec {name!r}")
    if rtx:
        chosen += [c for c in caps if c.mimeType.lower() == "video/rtx"]
    return chosen


# --- received media ----------------------------------------------------------
class AudioRecorder:
    def __init__(self):
        self.frames = 0
        self.sample_rate = 0
        self._chunks = []  # mono float32 arrays, newest last
        self._held = 0

    def add(self, frame: av.AudioFrame) -> None:
        self.frames += 1
        self.sample_rate = frame.sample_rate
        arr = frame.to_ndarray()
        channels = len(frame.layout.channels)
        if frame.format.is_planar:
            mono = arr.astype(np.float32).mean(axis=0)
        else:
            mono = arr.reshape(-1, channels).astype(np.float32).mean(axis=1)
        self._chunks.append(mono)
        self._held += len(mono)
        limit = int(AUDIO_WINDOW_S * (self.sample_rate or SAMPLE_RATE))
        while self._chunks and self._held - len(self._chunks[0]) >= limit:
            self._held -= len(self._chunks.pop(0))

    def stats(self) -> dict:
        out = {"frames": self.frames, "sample_rate": self.sample_rate,
               "rms_dbfs": None, "freq_hz": None, "window_s": 0.0}
        if not self._chunks or not self.sample_rate:
            return out
        x = np.concatenate(self._chunks)
        limit = int(AUDIO_WINDOW_S * self.sample_rate)
        x = x[-limit:]
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        out["rms_dbfs"] = round(max(-120.0, 20.0 * math.log10(max(rms, 1e-9) / 32768.0)), 2)
        # Frequency by rising zero crossings over the window.
        neg = x < 0
        rising = int(np.count_nonzero(neg[:-1] & ~neg[1:]))
        duration = len(x) / self.sample_rate
        out["freq_hz"] = round(rising / duration, 1) if duration > 0 else None
        out["window_s"] = round(duration, 3)
        return out


class VideoRecorder:
    def __init__(self):
        self.frames = 0
        self.width = 0
        self.height = 0

    def add(self, frame: av.VideoFrame) -> None:
        self.frames += 1
        self.width = frame.width
        self.height = frame.height


# --- the peer ----------------------------------------------------------------
DEFAULT_TRACK_STATUS = {"type": "trackStatus", "receiver_index": 0, "enabled": True}


class Peer:
    def __init__(self):
        self.pc = None
        self.gen = 0
        self.channel = None
        self.opts = {}
        self.tone = None
        self.tasks = set()
        self.audio = AudioRecorder()
        self.video = VideoRecorder()
        self.probe = None
        self.first_audio = None  # [threshold, pc] until reported
        self.camera_track = None
        self.screen_track = None

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close_pc(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.tasks.clear()
        pc, self.pc, self.channel = self.pc, None, None
        if pc is not None:
            await pc.close()

    # commands
    async def cmd_offer(self, cmd: dict) -> None:
        await self.close_pc()
        global HOST_ADDRESSES
        if cmd.get("host_addresses"):
            HOST_ADDRESSES = list(cmd["host_addresses"])
        self.opts = cmd
        self.audio = AudioRecorder()  # stats are per peer connection
        self.video = VideoRecorder()
        self.gen += 1
        gen = self.gen
        policy = cmd.get("bundle_policy") or ("max-bundle" if cmd.get("screen") else None)
        ice = [_ice_server(u) for u in cmd.get("ice_servers") or []]
        config = RTCConfiguration(iceServers=ice)
        if policy is not None:
            config.bundlePolicy = RTCBundlePolicy(policy)
        if cmd.get("ice_transport_policy"):
            config.iceTransportPolicy = RTCIceTransportPolicy(cmd["ice_transport_policy"])
        pc = RTCPeerConnection(config)
        self.pc = pc

        @pc.on("iceconnectionstatechange")
        def _ice():
            emit("ice_state", state=pc.iceConnectionState, pc=gen)

        @pc.on("connectionstatechange")
        def _conn():
            emit("connection_state", state=pc.connectionState, pc=gen)

        @pc.on("track")
        def _track(track):
            emit("track", kind=track.kind, pc=gen)
            self._spawn(self._read_track(track))

        @pc.on("datachannel")
        def _remote_channel(channel):
            self._hook_channel(channel, gen, ours=False)

        self.tone = None
        self.probe = None
        threshold = cmd.get("first_audio_threshold")
        self.first_audio = [float(threshold), gen] if threshold is not None else None
        audio_track = None
        bursts = cmd.get("bursts")
        if cmd.get("audio", True) and isinstance(bursts, dict):
            period_ms = float(bursts.get("period_ms", 500))
            self.tone = BurstTrack(bursts.get("hz", 1000), bursts.get("dbfs", -20),
                                   float(bursts.get("burst_ms", 60)), period_ms)
            self.probe = LatencyProbe(self.tone, bursts.get("threshold", 300.0),
                                      period_ms / 1000.0)
            audio_track = self.tone
        elif cmd.get("audio", True):
            self.tone = ToneTrack(cmd.get("tone_hz", 1000), cmd.get("tone_dbfs", -20))
            audio_track = self.tone
        # WHIP publishes (sendonly), WHEP views (recvonly); Pipecat is sendrecv.
        direction = cmd.get("direction", "sendrecv")
        if direction == "recvonly":
            audio_track = None
        if cmd.get("audio_line", True):
            pc.addTransceiver(audio_track or "audio", direction=direction)
        self.camera_track = self.screen_track = None
        video_transceivers = []
        if cmd.get("video_line", True):
            if cmd.get("video", True) and direction != "recvonly":
                self.camera_track = _video_track(cmd, "video_pattern", "video_frame_offset")
            video_transceivers.append(pc.addTransceiver(self.camera_track or "video",
                                                        direction=direction))
        if cmd.get("screen", False):
            self.screen_track = _video_track(cmd, "screen_pattern", "screen_frame_offset")
            video_transceivers.append(pc.addTransceiver(self.screen_track, direction="sendonly"))
        if cmd.get("video_codec"):
            prefs = _codec_preferences(str(cmd["video_codec"]), cmd.get("video_rtx", True))
            for t in video_transceivers:
                t.setCodecPreferences(prefs)

        if cmd.get("datachannel", True):
            channel = pc.createDataChannel(cmd.get("label", "chat"), id=cmd.get("channel_id"))
            self.channel = channel
            self._hook_channel(channel, gen, ours=True)

        await self._offer()

    async def _offer(self) -> None:
        pc = self.pc
        if pc is None:
            raise RuntimeError("no peer connection: send an offer command first")
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)  # aiortc completes gathering here
        emit("offer", sdp=pc.localDescription.sdp, pc=self.gen)

    async def cmd_renegotiate(self, cmd: dict) -> None:
        await self._offer()

    async def cmd_answer(self, cmd: dict) -> None:
        if self.pc is None:
            raise RuntimeError("no peer connection: send an offer command first")
        sdp = cmd.get("sdp")
        if not isinstance(sdp, str):
            raise ValueError("answer needs an 'sdp' string")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        # The candidates aiortc took from the answer for the transport the data channel
        # runs on (aiortc reads those of the last bundled m-section).
        ice = self.pc.sctp.transport.transport if self.pc.sctp else None
        emit("answered", remote_candidates=len(ice.getRemoteCandidates()) if ice else 0)

    async def cmd_send(self, cmd: dict) -> None:
        ch = self.channel
        if ch is None or ch.readyState != "open":
            state = ch.readyState if ch is not None else "none"
            raise RuntimeError(f"data channel not open (state {state})")
        text = cmd.get("text")
        if not isinstance(text, str):
            text = json.dumps(text)
        ch.send(text)
        emit("sent")

    async def cmd_set_tone(self, cmd: dict) -> None:
        if self.tone is None:
            raise RuntimeError("no tone track (offer with audio: true first)")
        self.tone.set_tone(cmd.get("hz", self.tone.hz), cmd.get("dbfs", self.tone.dbfs))
        emit("tone_set", hz=self.tone.hz, dbfs=self.tone.dbfs)

    async def cmd_audio_stats(self, cmd: dict) -> None:
        emit("audio_stats", **self.audio.stats())

    async def cmd_video_stats(self, cmd: dict) -> None:
        emit("video_stats", frames=self.video.frames, width=self.video.width,
             height=self.video.height)

    async def cmd_latency(self, cmd: dict) -> None:
        probe = self.probe
        if probe is None:
            raise RuntimeError("no latency probe (offer with a 'bursts' object first)")
        emit("latency", rtts_ms=list(probe.rtts_ms), bursts_sent=len(probe.track.sent_onsets),
             onsets=probe.onsets, unmatched=probe.unmatched)
        if cmd.get("reset"):
            probe.rtts_ms.clear()
            probe.onsets = 0
            probe.unmatched = 0

    def _sent_counts(self) -> dict:
        return {name: getattr(track, "sent", None) if track is not None else None
                for name, track in (("camera", self.camera_track),
                                    ("screen", self.screen_track))}

    async def cmd_video_sent(self, cmd: dict) -> None:
        emit("video_sent", **self._sent_counts())

    async def cmd_video_pause(self, cmd: dict) -> None:
        paused = bool(cmd.get("paused", True))
        tracks = [t for t in (self.camera_track, self.screen_track)
                  if isinstance(t, PatternTrack)]
        if not tracks:
            raise RuntimeError("no pausable video track (video_pattern 'swrtc' or a colour)")
        for t in tracks:
            t.set_paused(paused)
        emit("video_paused", paused=paused, **self._sent_counts())

    async def cmd_video_resize(self, cmd: dict) -> None:
        if not isinstance(self.camera_track, PatternTrack):
            raise RuntimeError("no resizable camera track (video_pattern 'swrtc')")
        w, h = cmd["size"]
        self.camera_track.resize(w, h)
        emit("video_resized", size=[int(w), int(h)])

    async def cmd_sender_codecs(self, cmd: dict) -> None:
        if self.pc is None:
            raise RuntimeError("no peer connection: send an offer command first")
        emit("sender_codecs", transceivers=[
            {"mid": t.mid, "kind": t.kind, "codecs": [c.mimeType for c in t._codecs],
             "direction": t.direction, "current_direction": t.currentDirection}
            for t in self.pc.getTransceivers()])

    async def cmd_ping(self, cmd: dict) -> None:
        emit("pong")

    # channels and tracks
    def _hook_channel(self, channel, gen: int, ours: bool) -> None:
        @channel.on("open")
        def _open():
            emit("channel_open", label=channel.label, pc=gen)
            if ours:
                self._spawn(self._after_open(channel))

        @channel.on("close")
        def _close():
            emit("channel_close", label=channel.label, pc=gen)

        @channel.on("message")
        def _message(msg):
            if isinstance(msg, (bytes, bytearray)):
                emit("message", text=bytes(msg).decode("utf-8", "replace"), binary=True,
                     label=channel.label, pc=gen)
            else:
                emit("message", text=msg, label=channel.label, pc=gen)

        # aiortc may announce a remote channel that is already open.
        if not ours and channel.readyState == "open":
            _open()

    async def _after_open(self, channel) -> None:
        status = self.opts.get("track_status", True)
        if status is not False and status is not None:
            message = DEFAULT_TRACK_STATUS if status is True else status
            channel.send(json.dumps({"type": "signalling", "message": message}))
        if not self.opts.get("pings", True):
            return
        while channel.readyState == "open":
            channel.send(f"ping: {int(time.time() * 1000)}")
            await asyncio.sleep(1.0)

    def _check_first_audio(self, frame: av.AudioFrame) -> None:
        threshold, gen = self.first_audio
        peak = int(np.max(np.abs(frame.to_ndarray().astype(np.int32)), initial=0))
        if peak >= threshold:
            self.first_audio = None
            emit("first_audio", pc=gen, frames=self.audio.frames, peak=peak)

    async def _read_track(self, track) -> None:
        rec = self.audio if track.kind == "audio" else self.video
        try:
            while True:
                frame = await track.recv()
                if track.kind == "audio" and self.probe is not None:
                    self.probe.add(frame, time.monotonic())
                rec.add(frame)
                if track.kind == "audio" and self.first_audio is not None:
                    self._check_first_audio(frame)
        except MediaStreamError:
            emit("track_ended", kind=track.kind)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep going: a bad frame must not kill the peer
            log.exception("track reader failed")
            emit("error", message=f"{track.kind} track reader: {exc!r}")


async def main() -> int:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def read_stdin():
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read_stdin, name="stdin", daemon=True).start()

    peer = Peer()
    while True:
        line = await queue.get()
        if line is None:
            log.info("stdin closed")
            break
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict) or not isinstance(cmd.get("cmd"), str):
                raise ValueError("command must be an object with a 'cmd' string")
        except Exception as exc:
            emit("error", message=f"bad command line: {exc}", line=line[:200])
            continue
        name = cmd["cmd"]
        if name == "close":
            try:
                await asyncio.wait_for(peer.close_pc(), COMMAND_TIMEOUT_S)
            except Exception as exc:
                emit("error", message=f"close: {exc!r}", cmd=name)
            emit("closed")
            return 0
        handler = getattr(peer, "cmd_" + name, None)
        if handler is None:
            emit("error", message=f"unknown command {name!r}", cmd=name)
            continue
        try:
            await asyncio.wait_for(handler(cmd), COMMAND_TIMEOUT_S)
        except asyncio.TimeoutError:
            emit("error", message=f"{name}: timed out after {COMMAND_TIMEOUT_S} s", cmd=name)
        except Exception as exc:
            log.debug("command %s failed", name, exc_info=True)
            emit("error", message=f"{name}: {type(exc).__name__}: {exc}", cmd=name)

    try:
        await asyncio.wait_for(peer.close_pc(), 5.0)
    except Exception:
        pass
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if os.environ.get("AIORTC_PEER_DEBUG") else logging.WARNING,
        format="aiortc_peer %(levelname)s %(name)s: %(message)s",
    )
    sys.exit(asyncio.run(main()))
