"""smallwebrtc for Python: typed wrappers over the library's C ABI (ctypes, no second
implementation). See python/README.md; the library is found as ``_lib`` describes."""

from ._lib import lib as _cdll
from .peer import Peer
from .server import NewPeer, Runtime, Server, ServerConfig, ServerLimits
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
)

__all__ = [
    "AudioFrame", "AudioStats", "Event", "MessageEvent", "NewPeer", "Peer", "PeerConfig",
    "PeerState", "PeerStats", "Result", "Runtime", "Server", "ServerConfig", "ServerLimits",
    "SmallWebRTCError", "StateEvent", "TrackStatusEvent", "VideoFrame", "VideoSource",
    "VideoStats", "library_version",
]


def library_version() -> str:
    """The version of the loaded libsmallwebrtc, e.g. "0.1.0"."""
    return _cdll.swrtc_version().decode()
