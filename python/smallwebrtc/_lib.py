"""Loads libsmallwebrtc and declares the C ABI of include/smallwebrtc.h for ctypes.

Where the library comes from, first match wins:
1. ``SMALLWEBRTC_LIB``: the path of the shared library;
2. the dynamic loader's search (an installed ``libsmallwebrtc.so.0`` or ``.so``,
   ``LD_LIBRARY_PATH``, ``ldconfig``);
3. a repository checkout above this package or the working directory:
   ``target/release/libsmallwebrtc.so``, then ``target/debug/libsmallwebrtc.so``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int,
    c_int16,
    c_size_t,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

# Room after every struct the library writes into or reads from. Structs only ever grow at
# their end (new fields get defaults), so a library newer than these declarations writes
# into this tail instead of past our buffer.
_SPARE = ("_spare", c_uint8 * 256)


class PeerConfig(Structure):
    _fields_ = [
        ("audio_in_enabled", c_bool),
        ("audio_out_enabled", c_bool),
        ("video_in_enabled", c_bool),
        ("video_out_enabled", c_bool),
        ("audio_in_sample_rate", c_uint32),
        ("audio_in_channels", c_uint32),
        ("audio_in_buffer_ms", c_uint32),
        ("audio_out_sample_rate", c_uint32),
        ("audio_out_channels", c_uint32),
        ("audio_out_10ms_chunks", c_uint32),
        ("audio_out_auto_silence", c_bool),
        ("opus_bitrate", c_uint32),
        ("opus_complexity", c_uint32),
        ("opus_fec", c_bool),
        ("video_out_width", c_uint32),
        ("video_out_height", c_uint32),
        ("video_out_framerate", c_uint32),
        ("video_out_bitrate", c_uint32),
        ("bind_ip", c_char_p),
        ("port_min", c_uint16),
        ("port_max", c_uint16),
        ("public_ip", c_char_p),
        ("connection_timeout_ms", c_uint32),
        ("deliver_before_connect", c_bool),
    ]


class PeerConfigSpare(Structure):
    _fields_ = [("c", PeerConfig), _SPARE]


class ServerConfig(Structure):
    _fields_ = [
        ("addr", c_char_p),
        ("peer", PeerConfig),
        ("single_connection", c_bool),
        ("esp32", c_bool),
        ("esp32_host", c_char_p),
        ("ice_servers_json", c_char_p),
        ("max_body", c_size_t),
        ("http_threads", c_uint32),
        ("pc_id_name", c_char_p),
        ("serve_page", c_bool),
        ("http_head_timeout_ms", c_uint32),
        ("http_body_timeout_ms", c_uint32),
        ("http_idle_timeout_ms", c_uint32),
        ("http_write_timeout_ms", c_uint32),
        ("max_headers", c_uint32),
        ("max_head_bytes", c_uint32),
        ("max_connections", c_uint32),
        ("max_connections_per_source", c_uint32),
        ("max_offer_m_lines", c_uint32),
        ("max_remote_candidates", c_uint32),
        ("max_peers", c_uint32),
        ("max_peers_per_source", c_uint32),
        ("max_connecting_peers", c_uint32),
        ("max_connecting_peers_per_source", c_uint32),
    ]


class ServerConfigSpare(Structure):
    _fields_ = [("c", ServerConfig), _SPARE]


class RuntimeConfig(Structure):
    _fields_ = [("io_threads", c_uint32), ("worker_threads", c_uint32), _SPARE]


class Event(Structure):
    _fields_ = [
        ("kind", c_int),
        ("state", c_int),
        ("data", POINTER(c_uint8)),
        ("len", c_size_t),
        ("binary", c_bool),
        ("receiver_index", c_uint32),
        ("enabled", c_bool),
        _SPARE,
    ]


class PeerStats(Structure):
    _fields_ = [
        (n, c_uint64)
        for n in (
            "datagrams_in",
            "datagrams_dropped",
            "datagrams_out",
            "pings_in",
            "messages_in",
            "messages_out",
            "messages_out_dropped",
            "messages_in_dropped",
            "events_dropped",
            "audio_packets_in",
        )
    ] + [_SPARE]


class AudioStats(Structure):
    _fields_ = [
        (n, c_uint64)
        for n in (
            "in_frames_dropped",
            "in_packets_dropped",
            "in_packets_decoded",
            "in_packets_lost",
            "in_packets_late",
            "in_frames_concealed",
            "in_frames_fec",
            "out_packets_sent",
            "out_packets_dropped",
            "out_queued_ms",
            "out_slots_skipped",
        )
    ] + [_SPARE]


class VideoStats(Structure):
    _fields_ = [
        ("in_frames_decoded", c_uint64 * 2),
        ("in_frames_overwritten", c_uint64 * 2),
        ("in_frames_dropped", c_uint64 * 2),
        ("in_decode_errors", c_uint64 * 2),
        ("out_frames_sent", c_uint64),
        ("out_frames_dropped", c_uint64),
        _SPARE,
    ]


class VideoFrame(Structure):
    _fields_ = [
        ("rgb", POINTER(c_uint8)),
        ("len", c_size_t),
        ("capacity", c_size_t),
        ("width", c_uint32),
        ("height", c_uint32),
        ("stride", c_size_t),
        ("pts", c_uint64),
        ("source", c_int),
        _SPARE,
    ]


ON_STATE = CFUNCTYPE(None, c_void_p, c_int)
ON_MESSAGE = CFUNCTYPE(None, c_void_p, POINTER(c_uint8), c_size_t, c_bool)
ON_TRACK_STATUS = CFUNCTYPE(None, c_void_p, c_uint32, c_bool)
ON_PEER = CFUNCTYPE(None, c_void_p, c_void_p, c_char_p, c_char_p)
ON_AUDIO = CFUNCTYPE(None, c_void_p, POINTER(c_int16), c_size_t, c_uint32, c_uint16, c_uint64)
ON_VIDEO = CFUNCTYPE(
    None, c_void_p, c_int, POINTER(c_uint8), c_uint32, c_uint32, c_size_t, c_uint64
)


class PeerCallbacks(Structure):
    _fields_ = [
        ("user_data", c_void_p),
        ("on_state", ON_STATE),
        ("on_message", ON_MESSAGE),
        ("on_track_status", ON_TRACK_STATUS),
    ]


class ServerCallbacks(Structure):
    _fields_ = [("user_data", c_void_p), ("on_peer", ON_PEER)]


P = c_void_p  # every opaque handle
R = c_int  # SwrtcResult

# name: (restype, argtypes)
_PROTOTYPES = {
    "swrtc_last_error": (c_char_p, []),
    "swrtc_version": (c_char_p, []),
    "swrtc_string_free": (None, [c_void_p]),
    "swrtc_runtime_config_default": (R, [POINTER(RuntimeConfig)]),
    "swrtc_runtime_new": (R, [POINTER(RuntimeConfig), POINTER(P)]),
    "swrtc_runtime_free": (None, [P]),
    "swrtc_peer_config_default": (R, [POINTER(PeerConfig)]),
    "swrtc_peer_new": (R, [P, POINTER(PeerConfig), POINTER(PeerCallbacks), POINTER(P)]),
    "swrtc_peer_free": (None, [P]),
    "swrtc_peer_set_callbacks": (R, [P, POINTER(PeerCallbacks)]),
    "swrtc_peer_handle_offer": (R, [P, c_char_p, c_size_t, POINTER(c_void_p), POINTER(c_size_t)]),
    "swrtc_peer_add_ice_candidate": (R, [P, c_char_p, c_size_t]),
    "swrtc_peer_connect": (R, [P]),
    "swrtc_peer_disconnect": (R, [P]),
    "swrtc_peer_send_message": (R, [P, c_void_p, c_size_t, c_bool]),
    "swrtc_peer_poll_event": (R, [P, c_uint32, POINTER(Event)]),
    "swrtc_event_clear": (None, [POINTER(Event)]),
    "swrtc_peer_state": (R, [P, POINTER(c_int)]),
    "swrtc_peer_get_stats": (R, [P, POINTER(PeerStats)]),
    "swrtc_peer_read_audio": (
        R,
        [P, POINTER(c_int16), c_size_t, POINTER(c_size_t), POINTER(c_uint64), c_uint32],
    ),
    "swrtc_peer_set_audio_callback": (R, [P, ON_AUDIO, c_void_p]),
    "swrtc_peer_write_audio": (R, [P, c_void_p, c_size_t, c_uint32]),
    "swrtc_peer_clear_audio": (R, [P]),
    "swrtc_peer_get_audio_stats": (R, [P, POINTER(AudioStats)]),
    "swrtc_peer_read_video": (R, [P, c_int, c_uint32, POINTER(VideoFrame)]),
    "swrtc_peer_snapshot": (R, [P, c_int, c_uint32, POINTER(VideoFrame)]),
    "swrtc_video_frame_clear": (None, [POINTER(VideoFrame)]),
    "swrtc_peer_write_video": (R, [P, c_void_p, c_size_t, c_uint32, c_uint32, c_size_t]),
    "swrtc_peer_get_video_stats": (R, [P, POINTER(VideoStats)]),
    "swrtc_peer_set_video_callback": (R, [P, c_int, ON_VIDEO, c_void_p]),
    "swrtc_server_config_default": (R, [POINTER(ServerConfig)]),
    "swrtc_server_new": (R, [P, POINTER(ServerConfig), POINTER(ServerCallbacks), POINTER(P)]),
    "swrtc_server_accept": (R, [P, c_uint32, POINTER(P), POINTER(c_void_p), POINTER(c_void_p)]),
    "swrtc_server_local_port": (R, [P, POINTER(c_uint16)]),
    "swrtc_server_free": (None, [P]),
}

_NAME = "libsmallwebrtc.so"


def _candidates() -> list[str]:
    found: list[str] = []
    env = os.environ.get("SMALLWEBRTC_LIB")
    if env:
        return [env]  # explicit: nothing else is tried, so a wrong path is an error
    found += ["libsmallwebrtc.so.0", _NAME]
    soname = ctypes.util.find_library("smallwebrtc")
    if soname:
        found.append(soname)
    for start in (Path(__file__).resolve().parent, Path.cwd()):
        for d in (start, *start.parents):
            if (d / "Cargo.toml").is_file():
                for profile in ("release", "debug"):
                    lib = d / "target" / profile / _NAME
                    if lib.is_file():
                        found.append(str(lib))
                break
    return found


def load() -> ctypes.CDLL:
    """Opens the library (see the module doc for where it looks) and declares its calls.

    ctypes.CDLL releases the GIL around every call, so a call that waits (free, a blocking
    read) never stops our callbacks, which need the GIL, from finishing.
    """
    tried = []
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            tried.append(f"{name}: {e}")
            continue
        for fn, (restype, argtypes) in _PROTOTYPES.items():
            f = getattr(lib, fn)
            f.restype = restype
            f.argtypes = argtypes
        return lib
    raise OSError(
        "libsmallwebrtc not found; set SMALLWEBRTC_LIB to its path, install it "
        "(cargo cinstall), or build it in the checkout (cargo build --release). Tried:\n  "
        + "\n  ".join(tried)
    )


lib = load()
