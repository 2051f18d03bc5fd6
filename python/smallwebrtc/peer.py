"""Peer: the server side of one client connection (swrtc_peer_*)."""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from ctypes import byref, c_int, c_int16, c_size_t, c_uint64, c_void_p
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import _lib
from ._lib import lib
from .types import (
    AudioFrame,
    AudioStats,
    Event,
    MessageEvent,
    PeerConfig,
    PeerState,
    PeerStats,
    Result,
    SmallWebRTCError,
    StateEvent,
    TrackStatusEvent,
    VideoFrame,
    VideoSource,
    VideoStats,
    _from_struct,
)

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("smallwebrtc")


def check(code: int) -> None:
    """Raises SmallWebRTCError for a failed call (its message is this thread's last error)."""
    if code != Result.OK:
        raise SmallWebRTCError(code, (lib.swrtc_last_error() or b"").decode("utf-8", "replace"))


def c_peer_config(cfg: PeerConfig, keep: list) -> _lib.PeerConfig:
    """Fills a C config from the library's defaults, then from ``cfg``."""
    out = _lib.PeerConfigSpare()
    check(lib.swrtc_peer_config_default(byref(out.c)))
    for name, value in asdict(cfg).items():
        if name in ("bind_ip", "public_ip"):
            value = value.encode() if value else None
            keep.append(value)  # c_char_p does not own its bytes
        setattr(out.c, name, value)
    keep.append(out)
    return out.c


def as_buffer(data: Any) -> tuple[Any, int, Any]:
    """A pointer to the bytes of ``data`` (bytes, bytearray, memoryview, numpy array, any
    buffer), its size, and the object that keeps them alive during the call. No copy unless
    the buffer is read-only and not ``bytes``, or not contiguous."""
    if isinstance(data, bytes):
        return ctypes.cast(ctypes.c_char_p(data), c_void_p), len(data), data
    mv = memoryview(data)
    if not mv.c_contiguous:
        b = mv.tobytes()
        return ctypes.cast(ctypes.c_char_p(b), c_void_p), len(b), b
    mv = mv.cast("B")
    if mv.readonly:
        b = mv.tobytes()
        return ctypes.cast(ctypes.c_char_p(b), c_void_p), len(b), b
    arr = (ctypes.c_char * len(mv)).from_buffer(mv)
    return ctypes.cast(arr, c_void_p), len(mv), (arr, mv)


_in_callback = threading.local()
# ctypes callbacks released by a close() that ran inside one of them: freeing a thunk that
# is still executing would crash when it returns, so they are dropped a while later.
_graveyard: list[tuple[float, list]] = []
_graveyard_lock = threading.Lock()


def release_later(keep: list) -> None:
    """Drops ``keep`` (ctypes callbacks) now, or a second later if we are inside a callback."""
    now = time.monotonic()
    with _graveyard_lock:
        _graveyard[:] = [(t, k) for t, k in _graveyard if now - t < 1.0]
        if getattr(_in_callback, "depth", 0):
            _graveyard.append((now, list(keep)))
    keep.clear()


def guarded(what: str, fn: Callable[..., None]) -> Callable[..., None]:
    """Wraps a Python callback so that no exception reaches the C caller: it is logged."""

    def call(*args: Any) -> None:
        _in_callback.depth = getattr(_in_callback, "depth", 0) + 1
        try:
            fn(*args)
        except BaseException:  # noqa: BLE001 - nothing may unwind into C
            log.exception("smallwebrtc: %s callback raised", what)
        finally:
            _in_callback.depth -= 1

    return call


class Peer:
    """One client connection. Make one with ``Peer(config)`` for your own signalling, or get
    it from a ``Server``.

    Thread-safety: every method may be called from any thread, also from inside a callback
    (then do not block: no waiting read, write audio with timeout 0). ``close()`` must not
    run while another thread is inside a call on the same peer; after it returns no
    callback of this peer runs.
    """

    def __init__(
        self,
        config: Optional[PeerConfig] = None,
        runtime: Optional["Runtime"] = None,
        on_event: Optional[Callable[[Event], None]] = None,
    ):
        self.config = config or PeerConfig()
        self._keep: list = []  # ctypes callbacks and strings the C side points to
        self._lock = threading.Lock()
        keep: list = []
        cfg = c_peer_config(self.config, keep)
        cbs = self._callbacks(on_event) if on_event else None
        handle = c_void_p()
        rt = runtime._handle if runtime is not None else None
        check(lib.swrtc_peer_new(rt, byref(cfg), byref(cbs) if cbs else None, byref(handle)))
        self._handle: Optional[int] = handle.value
        self._runtime = runtime  # peers keep their runtime alive on the C side too

    @classmethod
    def _adopt(cls, handle: int, config: PeerConfig) -> "Peer":
        p = cls.__new__(cls)
        p.config = config
        p._keep = []
        p._lock = threading.Lock()
        p._handle = handle
        p._runtime = None
        return p

    # -- lifetime ---------------------------------------------------------------------------
    @property
    def h(self) -> int:
        h = self._handle
        if h is None:
            raise SmallWebRTCError(Result.CLOSED, "this Peer was closed")
        return h

    def close(self) -> None:
        """Frees the peer (sends peerLeft, frees its ports). Idempotent."""
        with self._lock:
            h, self._handle = self._handle, None
        if h is not None:
            lib.swrtc_peer_free(h)  # releases the GIL: a running callback can finish
            release_later(self._keep)

    def __enter__(self) -> "Peer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- signalling -------------------------------------------------------------------------
    def handle_offer(self, sdp: str) -> str:
        """Answers an SDP offer (first or renegotiation); returns the SDP answer."""
        data = sdp.encode()
        out = c_void_p()
        check(lib.swrtc_peer_handle_offer(self.h, data, len(data), byref(out), None))
        try:
            return ctypes.string_at(out.value).decode()
        finally:
            lib.swrtc_string_free(out)

    def add_ice_candidate(self, candidate: str) -> None:
        """Adds a trickled remote candidate; ``""`` ends them."""
        data = candidate.encode()
        check(lib.swrtc_peer_add_ice_candidate(self.h, data or None, len(data)))

    def connect(self) -> None:
        """The app is ready: CONNECTED is delivered, then the messages held so far."""
        check(lib.swrtc_peer_connect(self.h))

    def disconnect(self) -> None:
        """Undoes one connect; the last one closes the peer (CLOSED follows)."""
        check(lib.swrtc_peer_disconnect(self.h))

    @property
    def state(self) -> PeerState:
        out = c_int()
        check(lib.swrtc_peer_state(self.h, byref(out)))
        return PeerState(out.value)

    # -- messages and events ----------------------------------------------------------------
    def send_message(self, data: "str | bytes", binary: Optional[bool] = None) -> None:
        """Sends an app message (1..65536 bytes); ``str`` goes as text, ``bytes`` as binary
        unless ``binary`` says otherwise. Raises WOULD_BLOCK when 50 wait for the channel."""
        if isinstance(data, str):
            payload, is_binary = data.encode(), False
        else:
            payload, is_binary = bytes(data), True
        if binary is not None:
            is_binary = binary
        check(lib.swrtc_peer_send_message(self.h, payload, len(payload), is_binary))

    def poll_event(self, timeout: float = 0.0) -> Optional[Event]:
        """The next event of a peer without ``on_event``, waiting up to ``timeout`` seconds;
        None when there is none. Do not wait in it from a callback."""
        ev = _lib.Event()
        code = lib.swrtc_peer_poll_event(self.h, _ms(timeout), byref(ev))
        if code in (Result.TIMEOUT, Result.WOULD_BLOCK):
            return None
        check(code)
        try:
            return _event(ev.kind, ev.state, ev.data, ev.len, ev.binary, ev.receiver_index, ev.enabled)
        finally:
            lib.swrtc_event_clear(byref(ev))

    def set_on_event(self, on_event: Optional[Callable[[Event], None]]) -> None:
        """Installs (None: removes) the event callback. It runs on the runtime's callback
        thread, one event at a time, a peer's events in order; exceptions are logged."""
        cbs = self._callbacks(on_event) if on_event else None
        check(lib.swrtc_peer_set_callbacks(self.h, byref(cbs) if cbs else None))

    def _callbacks(self, on_event: Callable[[Event], None]) -> _lib.PeerCallbacks:
        # Guarded whole: converting the C arguments may fail too, and must not unwind.
        cbs = _lib.PeerCallbacks(
            None,
            _lib.ON_STATE(guarded("on_event", lambda _ud, s: on_event(StateEvent(PeerState(s))))),
            _lib.ON_MESSAGE(guarded("on_event", lambda _ud, d, n, b: on_event(
                MessageEvent(ctypes.string_at(d, n), bool(b))))),
            _lib.ON_TRACK_STATUS(guarded("on_event", lambda _ud, i, e: on_event(
                TrackStatusEvent(int(i), bool(e))))),
        )
        # Kept until close: a replaced callback may still be finishing a call.
        self._keep.append(cbs)
        return cbs

    # -- audio ------------------------------------------------------------------------------
    def read_audio(self, timeout: float = 0.1) -> Optional[AudioFrame]:
        """The next 20 ms of the mic at ``config.audio_in_sample_rate``, or None when none
        came within ``timeout`` seconds (a muted mic is not an error)."""
        rate, ch = self.config.audio_in_sample_rate, self.config.audio_in_channels
        cap = rate // 50 * ch
        buf = (c_int16 * cap)()
        n, pts = c_size_t(), c_uint64()
        code = lib.swrtc_peer_read_audio(self.h, buf, cap, byref(n), byref(pts), _ms(timeout))
        if code in (Result.TIMEOUT, Result.WOULD_BLOCK):
            return None
        check(code)
        return AudioFrame(ctypes.string_at(buf, n.value * 2), rate, ch, pts.value)

    def write_audio(self, pcm: Any, timeout: float = 0.0) -> None:
        """Queues s16 PCM (bytes, bytearray, memoryview, int16 numpy array) at
        ``config.audio_out_sample_rate``: a whole number of 10 ms. With ``timeout`` > 0 waits
        until it was sent. Raises WOULD_BLOCK over 10 s queued."""
        ptr, nbytes, _keep = as_buffer(pcm)
        check(lib.swrtc_peer_write_audio(self.h, ptr, nbytes // 2, _ms(timeout)))

    def clear_audio(self) -> None:
        """Drops all queued output audio (barge-in)."""
        check(lib.swrtc_peer_clear_audio(self.h))

    def set_audio_callback(self, cb: Optional[Callable[[AudioFrame], None]]) -> None:
        """Push delivery of the mic: each 20 ms frame goes to ``cb`` on a worker thread
        instead of ``read_audio`` (None: back to reading). ``cb`` must not block."""
        if cb is None:
            check(lib.swrtc_peer_set_audio_callback(self.h, _lib.ON_AUDIO(), None))
            return
        def on_audio(_ud: Any, samples: Any, n: int, rate: int, ch: int, pts: int) -> None:
            cb(AudioFrame(ctypes.string_at(samples, n * 2), rate, ch, pts))

        c = _lib.ON_AUDIO(guarded("audio", on_audio))
        self._keep.append(c)
        check(lib.swrtc_peer_set_audio_callback(self.h, c, None))

    # -- video ------------------------------------------------------------------------------
    def read_video(
        self, source: VideoSource = VideoSource.CAMERA, timeout: float = 0.1
    ) -> Optional[VideoFrame]:
        """The newest decoded frame not yet read (latest wins), or None after ``timeout``."""
        return self._video(lib.swrtc_peer_read_video, source, timeout)

    def snapshot(
        self, source: VideoSource = VideoSource.CAMERA, timeout: float = 1.0
    ) -> Optional[VideoFrame]:
        """The next frame decoded after this call, or None after ``timeout``."""
        return self._video(lib.swrtc_peer_snapshot, source, timeout)

    def _video(self, fn: Any, source: VideoSource, timeout: float) -> Optional[VideoFrame]:
        f = _lib.VideoFrame()
        try:
            code = fn(self.h, int(source), _ms(timeout), byref(f))
            if code in (Result.TIMEOUT, Result.WOULD_BLOCK):
                return None
            check(code)
            return VideoFrame(
                ctypes.string_at(f.rgb, f.len), f.width, f.height, f.pts, VideoSource(f.source)
            )
        finally:
            lib.swrtc_video_frame_clear(byref(f))

    def write_video(self, rgb: Any, width: int, height: int) -> None:
        """Sends one packed RGB24 frame of the configured output size (copied)."""
        ptr, nbytes, _keep = as_buffer(rgb)
        check(lib.swrtc_peer_write_video(self.h, ptr, nbytes, width, height, 0))

    def set_video_callback(
        self, source: VideoSource, cb: Optional[Callable[[VideoFrame], None]]
    ) -> None:
        """Push delivery of one video source to ``cb`` on a worker thread (None: back to
        ``read_video``). ``cb`` must not block."""
        if cb is None:
            check(lib.swrtc_peer_set_video_callback(self.h, int(source), _lib.ON_VIDEO(), None))
            return
        def on_video(_ud: Any, src: int, rgb: Any, w: int, h: int, stride: int, pts: int) -> None:
            if stride == w * 3:
                data = ctypes.string_at(rgb, stride * h)
            else:  # padded rows: keep the pixels only
                base = ctypes.addressof(rgb.contents)
                data = b"".join(ctypes.string_at(base + r * stride, w * 3) for r in range(h))
            cb(VideoFrame(data, w, h, pts, VideoSource(src)))

        c = _lib.ON_VIDEO(guarded("video", on_video))
        self._keep.append(c)
        check(lib.swrtc_peer_set_video_callback(self.h, int(source), c, None))

    # -- stats ------------------------------------------------------------------------------
    def stats(self) -> PeerStats:
        s = _lib.PeerStats()
        check(lib.swrtc_peer_get_stats(self.h, byref(s)))
        return _from_struct(PeerStats, s)

    def audio_stats(self) -> AudioStats:
        s = _lib.AudioStats()
        check(lib.swrtc_peer_get_audio_stats(self.h, byref(s)))
        return _from_struct(AudioStats, s)

    def video_stats(self) -> VideoStats:
        s = _lib.VideoStats()
        check(lib.swrtc_peer_get_video_stats(self.h, byref(s)))
        return _from_struct(VideoStats, s)


def _ms(seconds: float) -> int:
    return max(0, min(int(seconds * 1000), 0xFFFFFFFF))


def _event(kind: int, state: int, data: Any, n: int, binary: bool, idx: int, en: bool) -> Event:
    if kind == 0:
        return StateEvent(PeerState(state))
    if kind == 1:
        return MessageEvent(ctypes.string_at(data, n), bool(binary))
    return TrackStatusEvent(int(idx), bool(en))
