"""Enums, errors and the plain data the wrappers return."""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any, Optional, Union


class Result(enum.IntEnum):
    """SwrtcResult."""

    OK = 0
    INVALID_ARGUMENT = 1
    INVALID_SDP = 2
    INVALID_CANDIDATE = 3
    NOT_CONNECTED = 4
    CLOSED = 5
    TIMEOUT = 6
    WOULD_BLOCK = 7
    BUFFER_TOO_SMALL = 8
    TOO_LARGE = 9
    IO = 10
    INTERNAL = 11


class PeerState(enum.IntEnum):
    """SwrtcPeerState: the state of a peer as the app sees it."""

    NEW = 0
    CONNECTING = 1
    CONNECTED = 2
    DISCONNECTED = 3
    FAILED = 4
    CLOSED = 5


class VideoSource(enum.IntEnum):
    """Which client video track: the camera (m-line 1) or the screen share (m-line 2)."""

    CAMERA = 0
    SCREEN = 1


class SmallWebRTCError(Exception):
    """A failed ``swrtc_*`` call: ``code`` is its result, the text its message."""

    def __init__(self, code: int, message: str):
        try:
            self.code: Union[Result, int] = Result(code)
        except ValueError:
            self.code = code
        name = self.code.name if isinstance(self.code, Result) else str(code)
        super().__init__(f"{name}: {message}" if message else name)


@dataclass(frozen=True)
class AudioFrame:
    """Interleaved s16 PCM (native byte order), ``pts`` in samples per channel."""

    pcm: bytes
    sample_rate: int
    channels: int
    pts: int

    @property
    def samples(self) -> int:
        """Samples per channel."""
        return len(self.pcm) // (2 * self.channels)

    def numpy(self) -> Any:
        """The samples as an int16 array of shape (samples, channels); needs numpy."""
        import numpy as np

        return np.frombuffer(self.pcm, dtype=np.int16).reshape(-1, self.channels)


@dataclass(frozen=True)
class VideoFrame:
    """Packed RGB24, ``height`` rows of ``width * 3`` bytes; ``pts`` on the 90 kHz clock."""

    rgb: bytes
    width: int
    height: int
    pts: int
    source: VideoSource

    def numpy(self) -> Any:
        """The pixels as a uint8 array of shape (height, width, 3); needs numpy."""
        import numpy as np

        return np.frombuffer(self.rgb, dtype=np.uint8).reshape(self.height, self.width, 3)


@dataclass(frozen=True)
class StateEvent:
    state: PeerState


@dataclass(frozen=True)
class MessageEvent:
    data: bytes
    binary: bool

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass(frozen=True)
class TrackStatusEvent:
    receiver_index: int  # 0 mic, 1 camera, 2 screen
    enabled: bool


Event = Union[StateEvent, MessageEvent, TrackStatusEvent]
"""What ``Peer.poll_event`` returns and ``Peer.on_event`` receives."""


def _from_struct(cls: Any, s: Any) -> Any:
    values = {}
    for f in fields(cls):
        v = getattr(s, f.name)
        values[f.name] = tuple(v) if not isinstance(v, int) else v
    return cls(**values)


@dataclass(frozen=True)
class PeerStats:
    """SwrtcPeerStats: transport and message counters."""

    datagrams_in: int
    datagrams_dropped: int
    datagrams_out: int
    pings_in: int
    messages_in: int
    messages_out: int
    messages_out_dropped: int
    messages_in_dropped: int
    events_dropped: int
    audio_packets_in: int


@dataclass(frozen=True)
class AudioStats:
    """SwrtcAudioStats: audio counters each way."""

    in_frames_dropped: int
    in_packets_dropped: int
    in_packets_decoded: int
    in_packets_lost: int
    in_packets_late: int
    in_frames_concealed: int
    in_frames_fec: int
    out_packets_sent: int
    out_packets_dropped: int
    out_queued_ms: int
    out_slots_skipped: int


@dataclass(frozen=True)
class VideoStats:
    """SwrtcVideoStats: per-source tuples are indexed by VideoSource."""

    in_frames_decoded: tuple[int, int]
    in_frames_overwritten: tuple[int, int]
    in_frames_dropped: tuple[int, int]
    in_decode_errors: tuple[int, int]
    out_frames_sent: int
    out_frames_dropped: int


@dataclass
class PeerConfig:
    """Settings of a peer (SwrtcPeerConfig); the defaults are the library's."""

    audio_in_enabled: bool = True
    audio_out_enabled: bool = True
    video_in_enabled: bool = False
    video_out_enabled: bool = False
    audio_in_sample_rate: int = 16000
    audio_in_channels: int = 1
    audio_in_buffer_ms: int = 1000
    audio_out_sample_rate: int = 24000
    audio_out_channels: int = 1
    audio_out_10ms_chunks: int = 2
    audio_out_auto_silence: bool = True
    opus_bitrate: int = 32000
    opus_complexity: int = 5
    opus_fec: bool = True
    video_out_width: int = 640
    video_out_height: int = 480
    video_out_framerate: int = 30
    video_out_bitrate: int = 1_000_000
    bind_ip: Optional[str] = None
    port_min: int = 0
    port_max: int = 0
    public_ip: Optional[str] = None
    connection_timeout_ms: int = 60000
    deliver_before_connect: bool = False
