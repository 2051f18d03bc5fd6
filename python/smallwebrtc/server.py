"""Runtime (swrtc_runtime_*) and the HTTP signalling server (swrtc_server_*)."""

from __future__ import annotations

import ctypes
import json
import threading
from ctypes import byref, c_uint16, c_void_p
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import _lib
from ._lib import lib
from .peer import Peer, _ms, c_peer_config, check, guarded, release_later
from .types import PeerConfig, Result, SmallWebRTCError


class Runtime:
    """A set of library threads (I/O threads, callback thread, codec workers). Optional:
    without one, peers and servers use the process-wide runtime. Peers keep it running
    until they are freed. Do not close it from a callback of one of its peers."""

    def __init__(self, io_threads: int = 1, worker_threads: int = 0):
        cfg = _lib.RuntimeConfig()
        check(lib.swrtc_runtime_config_default(byref(cfg)))
        cfg.io_threads, cfg.worker_threads = io_threads, worker_threads
        h = c_void_p()
        check(lib.swrtc_runtime_new(byref(cfg), byref(h)))
        self._handle: Optional[int] = h.value

    def close(self) -> None:
        h, self._handle = self._handle, None
        if h is not None:
            lib.swrtc_runtime_free(h)

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class ServerLimits:
    """The server's HTTP and peer bounds (the ``SwrtcServerConfig`` limit fields). ``None``
    keeps the library's default; see the C header for each default and what happens past
    it (431, 503 with Retry-After, ...)."""

    http_head_timeout_ms: Optional[int] = None
    http_body_timeout_ms: Optional[int] = None
    http_idle_timeout_ms: Optional[int] = None
    http_write_timeout_ms: Optional[int] = None
    max_headers: Optional[int] = None
    max_head_bytes: Optional[int] = None
    max_connections: Optional[int] = None
    max_connections_per_source: Optional[int] = None
    max_offer_m_lines: Optional[int] = None
    max_remote_candidates: Optional[int] = None
    max_peers: Optional[int] = None
    max_peers_per_source: Optional[int] = None
    max_connecting_peers: Optional[int] = None
    max_connecting_peers_per_source: Optional[int] = None


@dataclass
class ServerConfig:
    """Settings of a signalling server (SwrtcServerConfig); ``peer`` is used for every peer
    it creates."""

    addr: str = "127.0.0.1:7860"
    peer: PeerConfig = field(default_factory=PeerConfig)
    single_connection: bool = False
    esp32: bool = False
    esp32_host: Optional[str] = None
    ice_servers: Optional[list] = None  # [{"urls": [...], "username": ..., "credential": ...}]
    max_body: int = 262144
    http_threads: int = 4
    pc_id_name: Optional[str] = None
    serve_page: bool = True
    limits: ServerLimits = field(default_factory=ServerLimits)


@dataclass
class NewPeer:
    """A client that just connected: its peer (yours to close), pc_id and request_data."""

    peer: Peer
    pc_id: str
    request_data: Any


class Server:
    """Pipecat's SmallWebRTC HTTP routes (POST/PATCH /api/offer, POST /start, the test page).

    With ``on_peer``, each new client is handed to it on one of the server's HTTP threads,
    before the answer goes out: keep it short (hand the peer to your own thread or event
    loop). Without it, take new clients with ``accept()``. Any thread may call any method;
    ``close()`` waits for a running ``on_peer`` (unless called from inside it).
    """

    def __init__(
        self,
        config: Optional[ServerConfig] = None,
        on_peer: Optional[Callable[[NewPeer], None]] = None,
        runtime: Any = None,
    ):
        self.config = config or ServerConfig()
        c = self.config
        keep: list = []
        out = _lib.ServerConfigSpare()
        check(lib.swrtc_server_config_default(byref(out.c)))
        out.c.peer = c_peer_config(c.peer, keep)

        def s(v: Optional[str]) -> Optional[bytes]:
            b = v.encode() if v is not None else None
            keep.append(b)
            return b

        out.c.addr = s(c.addr)
        out.c.single_connection = c.single_connection
        out.c.esp32 = c.esp32
        out.c.esp32_host = s(c.esp32_host)
        out.c.ice_servers_json = s(json.dumps(c.ice_servers) if c.ice_servers else None)
        out.c.max_body = c.max_body
        out.c.http_threads = c.http_threads
        out.c.pc_id_name = s(c.pc_id_name)
        out.c.serve_page = c.serve_page
        for name, value in vars(c.limits).items():
            if value is not None:
                setattr(out.c, name, value)
        cbs = None
        self._keep: list = []
        if on_peer is not None:

            def cb(_ud: Any, peer: int, pc_id: bytes, request_data: bytes) -> None:
                # The peer is ours from here: if adopting it fails, Peer.__del__ frees it.
                adopted = Peer._adopt(peer, c.peer)
                on_peer(NewPeer(adopted, pc_id.decode(), _json(request_data)))

            cbs = _lib.ServerCallbacks(None, _lib.ON_PEER(guarded("on_peer", cb)))
            self._keep.append(cbs)
        h = c_void_p()
        rt = runtime._handle if runtime is not None else None
        check(lib.swrtc_server_new(rt, byref(out.c), byref(cbs) if cbs else None, byref(h)))
        self._handle: Optional[int] = h.value
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The TCP port it listens on (useful after starting on port 0)."""
        p = c_uint16()
        check(lib.swrtc_server_local_port(self._h(), byref(p)))
        return p.value

    @property
    def url(self) -> str:
        host = self.config.addr.rsplit(":", 1)[0]
        return f"http://{host}:{self.port}"

    def accept(self, timeout: float = 1.0) -> Optional[NewPeer]:
        """The next new client (for servers without ``on_peer``), or None after ``timeout``."""
        peer, pc_id, rd = c_void_p(), c_void_p(), c_void_p()
        code = lib.swrtc_server_accept(self._h(), _ms(timeout), byref(peer), byref(pc_id), byref(rd))
        if code in (Result.TIMEOUT, Result.WOULD_BLOCK):
            return None
        check(code)
        try:
            return NewPeer(
                Peer._adopt(peer.value, self.config.peer),
                ctypes.string_at(pc_id.value).decode(),
                _json(ctypes.string_at(rd.value)),
            )
        finally:
            lib.swrtc_string_free(pc_id)
            lib.swrtc_string_free(rd)

    def _h(self) -> int:
        if self._handle is None:
            raise SmallWebRTCError(Result.CLOSED, "this Server was closed")
        return self._handle

    def close(self) -> None:
        """Stops listening and frees the server; peers handed out live on."""
        with self._lock:
            h, self._handle = self._handle, None
        if h is not None:
            lib.swrtc_server_free(h)
            release_later(self._keep)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _json(raw: Optional[bytes]) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
