//! C ABI of peers: configuration, callbacks, signalling calls, messages and pull events.

use std::ffi::{c_char, c_void, CString};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::api::Peer;
use crate::config::PeerConfig;
use crate::error::{Error, ErrorKind};
use crate::runtime::{PeerEvent, PeerHandler, Runtime};
use crate::session::PeerState;

use super::runtime::SwrtcRuntime;
use super::{cstr_opt, guard, str_arg, SwrtcResult};

/// A WebRTC peer: the server side of one client connection. Opaque.
pub struct SwrtcPeer {
    // Shared with the signalling server's registry, which holds it weakly to renegotiate.
    peer: Arc<Peer>,
    protocol: SwrtcProtocol,
}

impl SwrtcPeer {
    /// A C handle for a peer created elsewhere (the signalling server), by `protocol`.
    #[cfg_attr(not(feature = "signalling"), allow(dead_code))]
    pub(super) fn from_shared(peer: Arc<Peer>, protocol: SwrtcProtocol) -> SwrtcPeer {
        SwrtcPeer { peer, protocol }
    }
}

/// The signalling a peer came by (see `swrtc_peer_protocol`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwrtcProtocol {
    /// Made by `swrtc_peer_new`: the app does its own signalling.
    SWRTC_PROTOCOL_APP = 0,
    /// Pipecat's `/api/offer` on the signalling server: a two-way bot session.
    SWRTC_PROTOCOL_PIPECAT = 1,
    /// WHIP (`POST /whip`): the client publishes audio/video and receives nothing.
    SWRTC_PROTOCOL_WHIP = 2,
    /// WHEP (`POST /whep`): the client views what the app writes and sends no media.
    SWRTC_PROTOCOL_WHEP = 3,
}

/// The signalling `peer` came by: `SWRTC_PROTOCOL_APP` for peers from `swrtc_peer_new`,
/// otherwise the signalling server endpoint that made it. Any thread, callbacks too.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL `peer` or `out`).
///
/// # Safety
/// `peer` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_protocol(
    peer: *const SwrtcPeer,
    out: *mut SwrtcProtocol,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: NULL or live per the contract.
        let p = unsafe { peer.as_ref() }.ok_or_else(|| Error::invalid("peer is NULL"))?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        // SAFETY: checked non-NULL.
        unsafe { out.write(p.protocol) };
        Ok(())
    })
}

/// The state of a peer as the app sees it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwrtcPeerState {
    /// Created, no offer yet.
    SWRTC_PEER_NEW = 0,
    /// Offer answered, connecting (or connected while the app has not called connect).
    SWRTC_PEER_CONNECTING = 1,
    /// Connected and the app called connect.
    SWRTC_PEER_CONNECTED = 2,
    /// Transport lost or no ping for 3 s; may come back.
    SWRTC_PEER_DISCONNECTED = 3,
    /// Gave up (connect timeout, disconnected 30 s); closed follows.
    SWRTC_PEER_FAILED = 4,
    /// Closed. Reported once, last.
    SWRTC_PEER_CLOSED = 5,
}

impl From<PeerState> for SwrtcPeerState {
    fn from(s: PeerState) -> Self {
        match s {
            PeerState::New => SwrtcPeerState::SWRTC_PEER_NEW,
            PeerState::Connecting => SwrtcPeerState::SWRTC_PEER_CONNECTING,
            PeerState::Connected => SwrtcPeerState::SWRTC_PEER_CONNECTED,
            PeerState::Disconnected => SwrtcPeerState::SWRTC_PEER_DISCONNECTED,
            PeerState::Failed => SwrtcPeerState::SWRTC_PEER_FAILED,
            PeerState::Closed => SwrtcPeerState::SWRTC_PEER_CLOSED,
        }
    }
}

/// Settings of a peer. Always fill with `swrtc_peer_config_default` first, then change
/// fields, so that fields added later get their defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SwrtcPeerConfig {
    /// Receive the client's microphone. Default true.
    pub audio_in_enabled: bool,
    /// Send audio to the client. Default true.
    pub audio_out_enabled: bool,
    /// Receive the client's camera and screen. Default false.
    pub video_in_enabled: bool,
    /// Send video to the client. Default false.
    pub video_out_enabled: bool,
    /// Rate of the audio `swrtc_peer_read_audio` returns (Hz). Default 16000.
    pub audio_in_sample_rate: u32,
    /// Channels of the audio read (1 or 2). Default 1.
    pub audio_in_channels: u32,
    /// Decoded input audio kept when the app does not read (ms). Default 1000.
    pub audio_in_buffer_ms: u32,
    /// Rate of the audio the app writes (Hz). Default 24000.
    pub audio_out_sample_rate: u32,
    /// Channels of the audio written (1 or 2). Default 1.
    pub audio_out_channels: u32,
    /// Opus packet duration in 10 ms units (1..=6). Default 2.
    pub audio_out_10ms_chunks: u32,
    /// Send silence when nothing is queued. Default true.
    pub audio_out_auto_silence: bool,
    /// Opus bitrate, bit/s. Default 32000.
    pub opus_bitrate: u32,
    /// Opus complexity 0..=10. Default 5.
    pub opus_complexity: u32,
    /// Opus in-band FEC in what we send. Default true.
    pub opus_fec: bool,
    /// Width of written video. Default 0 (with height 0): any even size, following the
    /// frames written (a new size restarts the encoder with a keyframe); non-zero pins it.
    pub video_out_width: u32,
    /// Height of written video. Default 0 (follow the frames, see `video_out_width`).
    pub video_out_height: u32,
    /// Frame rate of written video. Default 30.
    pub video_out_framerate: u32,
    /// Video bitrate, bit/s. Default 1000000.
    pub video_out_bitrate: u32,
    /// IP address to bind (NUL-terminated), or NULL for every non-loopback IPv4 interface.
    /// Copied by `swrtc_peer_new`. This and the port range are ignored on a runtime with
    /// `udp_shared` (every peer on its one port).
    pub bind_ip: *const c_char,
    /// Lowest UDP port (0 with `port_max` 0: any port).
    pub port_min: u16,
    /// Highest UDP port.
    pub port_max: u16,
    /// Public IP to advertise for 1:1 NAT (NUL-terminated), or NULL. Copied.
    pub public_ip: *const c_char,
    /// Close a peer not connected this long after its offer (ms). Default 60000.
    pub connection_timeout_ms: u32,
    /// Deliver app messages before `swrtc_peer_connect`. Default false.
    pub deliver_before_connect: bool,
    /// Send audio with RFC 2198 redundancy when the client offered RED (Chromium does);
    /// about twice the audio bitrate. Default false.
    pub audio_out_red: bool,
}

/// Callbacks of a peer. Every pointer may be NULL. They run on the runtime's callback
/// thread (never on an I/O thread, never on the caller's thread), one at a time, events of
/// a peer in order. From inside a callback any `swrtc_*` function may be called, including
/// `swrtc_peer_free` on the same peer; no lock of the library is held while they run.
/// Once `swrtc_peer_free` returns, no callback of that peer runs, whatever other threads
/// (the signalling server handling a request for the peer, say) still do with it.
/// `user_data` must stay valid until then.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SwrtcPeerCallbacks {
    /// Passed first to every callback.
    pub user_data: *mut c_void,
    /// The peer's state changed.
    pub on_state: Option<unsafe extern "C" fn(user_data: *mut c_void, state: SwrtcPeerState)>,
    /// An app message arrived. `data` is valid only during the call and is followed by a
    /// NUL byte not counted in `len`.
    pub on_message: Option<
        unsafe extern "C" fn(user_data: *mut c_void, data: *const u8, len: usize, binary: bool),
    >,
    /// The client enabled or disabled a track (0 mic, 1 camera, 2 screen).
    pub on_track_status:
        Option<unsafe extern "C" fn(user_data: *mut c_void, receiver_index: u32, enabled: bool)>,
}

/// What a pulled event is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwrtcEventKind {
    /// `state` is set.
    SWRTC_EVENT_STATE = 0,
    /// `data`, `len` and `binary` are set.
    SWRTC_EVENT_MESSAGE = 1,
    /// `receiver_index` and `enabled` are set.
    SWRTC_EVENT_TRACK_STATUS = 2,
}

/// An event returned by `swrtc_peer_poll_event`. Release with `swrtc_event_clear`.
#[repr(C)]
#[derive(Debug)]
pub struct SwrtcEvent {
    /// Which fields are meaningful.
    pub kind: SwrtcEventKind,
    /// For `SWRTC_EVENT_STATE`.
    pub state: SwrtcPeerState,
    /// For `SWRTC_EVENT_MESSAGE`: owned by the event, NUL-terminated (not counted in len).
    pub data: *mut u8,
    /// Length of `data` in bytes.
    pub len: usize,
    /// Whether the message was binary.
    pub binary: bool,
    /// For `SWRTC_EVENT_TRACK_STATUS`.
    pub receiver_index: u32,
    /// For `SWRTC_EVENT_TRACK_STATUS`.
    pub enabled: bool,
}

/// Counters of a peer.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SwrtcPeerStats {
    /// Datagrams handed to the WebRTC stack.
    pub datagrams_in: u64,
    /// Datagrams dropped before it: oversized (> 2000 bytes), garbage, or not ours.
    pub datagrams_dropped: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Pings received.
    pub pings_in: u64,
    /// App messages received.
    pub messages_in: u64,
    /// App messages sent.
    pub messages_out: u64,
    /// Outbound app messages dropped (queue of 50 full, or no channel 10 s after connect).
    pub messages_out_dropped: u64,
    /// Inbound app messages dropped while held for connect.
    pub messages_in_dropped: u64,
    /// Events dropped because the app did not poll or its callbacks were too slow.
    pub events_dropped: u64,
    /// Mic packets received.
    pub audio_packets_in: u64,
    /// Datagrams that arrived before their candidate pair was accepted and were kept.
    pub early_held: u64,
    /// Early datagrams handed on (the pair was accepted, or the source had sent an
    /// authenticated check).
    pub early_delivered: u64,
    /// Early datagrams dropped (over 16 datagrams or 16 KiB, or older than 2 s); also in
    /// `datagrams_dropped`.
    pub early_dropped: u64,
}

struct CHandler(SwrtcPeerCallbacks);

// SAFETY: the header documents that callbacks run on the library's callback thread and
// that user_data must be usable from it; the library never touches user_data itself.
unsafe impl Send for CHandler {}
// SAFETY: as above; callbacks are never run concurrently for one peer.
unsafe impl Sync for CHandler {}

impl PeerHandler for CHandler {
    fn on_event(&self, event: &PeerEvent) {
        let cb = &self.0;
        // SAFETY: the app registered these functions for this user_data (see header).
        unsafe {
            match event {
                PeerEvent::State(s) => {
                    if let Some(f) = cb.on_state {
                        f(cb.user_data, (*s).into());
                    }
                }
                PeerEvent::Message { data, binary } => {
                    if let Some(f) = cb.on_message {
                        let mut z = Vec::with_capacity(data.len() + 1);
                        z.extend_from_slice(data);
                        z.push(0);
                        f(cb.user_data, z.as_ptr(), data.len(), *binary);
                    }
                }
                PeerEvent::TrackStatus {
                    receiver_index,
                    enabled,
                } => {
                    if let Some(f) = cb.on_track_status {
                        f(cb.user_data, *receiver_index, *enabled);
                    }
                }
            }
        }
    }
}

pub(super) fn to_c_config(c: &PeerConfig) -> SwrtcPeerConfig {
    SwrtcPeerConfig {
        audio_in_enabled: c.audio_in_enabled,
        audio_out_enabled: c.audio_out_enabled,
        video_in_enabled: c.video_in_enabled,
        video_out_enabled: c.video_out_enabled,
        audio_in_sample_rate: c.audio_in_sample_rate,
        audio_in_channels: c.audio_in_channels.into(),
        audio_in_buffer_ms: c.audio_in_buffer_ms,
        audio_out_sample_rate: c.audio_out_sample_rate,
        audio_out_channels: c.audio_out_channels.into(),
        audio_out_10ms_chunks: c.audio_out_10ms_chunks,
        audio_out_auto_silence: c.audio_out_auto_silence,
        opus_bitrate: c.opus_bitrate,
        opus_complexity: c.opus_complexity,
        opus_fec: c.opus_fec,
        video_out_width: c.video_out_width,
        video_out_height: c.video_out_height,
        video_out_framerate: c.video_out_framerate,
        video_out_bitrate: c.video_out_bitrate,
        bind_ip: std::ptr::null(),
        port_min: c.port_min,
        port_max: c.port_max,
        public_ip: std::ptr::null(),
        connection_timeout_ms: c.connection_timeout.as_millis().min(u32::MAX as u128) as u32,
        deliver_before_connect: c.deliver_before_connect,
        audio_out_red: c.audio_out_red,
    }
}

/// # Safety
/// The string pointers in `c` are NULL or NUL-terminated.
pub(super) unsafe fn from_c_config(c: &SwrtcPeerConfig) -> Result<PeerConfig, Error> {
    let ip = |p: *const c_char, what: &str| -> Result<Option<IpAddr>, Error> {
        // SAFETY: forwarded from the caller's guarantee.
        match unsafe { cstr_opt(p, what) }? {
            None => Ok(None),
            Some(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Error::invalid(format!("{what} {s:?} is not an IP address"))),
        }
    };
    let channels = |v: u32, what: &str| {
        u16::try_from(v).map_err(|_| Error::invalid(format!("{what} {v} is out of range")))
    };
    Ok(PeerConfig {
        audio_in_enabled: c.audio_in_enabled,
        audio_out_enabled: c.audio_out_enabled,
        video_in_enabled: c.video_in_enabled,
        video_out_enabled: c.video_out_enabled,
        audio_in_sample_rate: c.audio_in_sample_rate,
        audio_in_channels: channels(c.audio_in_channels, "audio_in_channels")?,
        audio_in_buffer_ms: c.audio_in_buffer_ms,
        audio_out_sample_rate: c.audio_out_sample_rate,
        audio_out_channels: channels(c.audio_out_channels, "audio_out_channels")?,
        audio_out_10ms_chunks: c.audio_out_10ms_chunks,
        audio_out_auto_silence: c.audio_out_auto_silence,
        opus_bitrate: c.opus_bitrate,
        opus_complexity: c.opus_complexity,
        opus_fec: c.opus_fec,
        video_out_width: c.video_out_width,
        video_out_height: c.video_out_height,
        video_out_framerate: c.video_out_framerate,
        video_out_bitrate: c.video_out_bitrate,
        bind_ip: ip(c.bind_ip, "bind_ip")?,
        port_min: c.port_min,
        port_max: c.port_max,
        public_ip: ip(c.public_ip, "public_ip")?,
        connection_timeout: Duration::from_millis(c.connection_timeout_ms.into()),
        deliver_before_connect: c.deliver_before_connect,
        audio_out_red: c.audio_out_red,
    })
}

/// Borrows the Rust peer behind a handle.
///
/// # Safety
/// `p` is NULL or a live handle from `swrtc_peer_new`.
pub(super) unsafe fn peer_ref<'a>(p: *const SwrtcPeer) -> Result<&'a Peer, Error> {
    // SAFETY: the caller guarantees a live handle or NULL.
    unsafe { p.as_ref() }
        .map(|p| &*p.peer)
        .ok_or_else(|| Error::invalid("peer is NULL"))
}

/// Installs, replaces or (with `callbacks` NULL) removes a peer's callbacks, for peers made
/// without them (such as those `swrtc_server_accept` and the server's `on_peer` hand over).
/// The struct is copied. Events already queued for `swrtc_peer_poll_event` stay there.
/// Callbacks follow `SwrtcPeerCallbacks`' rules. After removing them returns, no callback
/// of this peer runs (unless called from inside one, which then finishes).
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (`peer` NULL). Any thread, also from a callback.
///
/// # Safety
/// `peer` live; `callbacks` NULL or readable for one `SwrtcPeerCallbacks`.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_set_callbacks(
    peer: *const SwrtcPeer,
    callbacks: *const SwrtcPeerCallbacks,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        // SAFETY: NULL or valid per the contract.
        let handler =
            unsafe { callbacks.as_ref() }.map(|cb| Arc::new(CHandler(*cb)) as Arc<dyn PeerHandler>);
        p.set_handler(handler);
        Ok(())
    })
}

/// Fills `cfg` with the defaults (a voice bot: 16 kHz mono in, 24 kHz mono out, Opus 20 ms).
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` if `cfg` is NULL. Any thread.
///
/// # Safety
/// `cfg` is NULL or writable for one `SwrtcPeerConfig`.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_config_default(cfg: *mut SwrtcPeerConfig) -> SwrtcResult {
    guard(|| {
        if cfg.is_null() {
            return Err(Error::invalid("cfg is NULL"));
        }
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { cfg.write(to_c_config(&PeerConfig::default())) };
        Ok(())
    })
}

/// Creates a peer and binds its UDP sockets. `rt` NULL: the process-wide runtime (started
/// on first use). `cfg` NULL: defaults. `callbacks` NULL: no callbacks; pull events with
/// `swrtc_peer_poll_event`. On success `*out` owns the peer; free it with `swrtc_peer_free`.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL `out`, bad config values), `SWRTC_ERR_IO`
/// (no port free). Any thread, including from inside a callback.
///
/// # Safety
/// Pointers are NULL or valid; strings in `cfg` NUL-terminated; `callbacks` and its
/// `user_data` follow `SwrtcPeerCallbacks`' rules.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_new(
    rt: *const SwrtcRuntime,
    cfg: *const SwrtcPeerConfig,
    callbacks: *const SwrtcPeerCallbacks,
    out: *mut *mut SwrtcPeer,
) -> SwrtcResult {
    guard(|| {
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        // SAFETY: NULL or valid per the contract.
        let config = match unsafe { cfg.as_ref() } {
            // SAFETY: forwarded contract on the strings inside.
            Some(c) => unsafe { from_c_config(c) }?,
            None => PeerConfig::default(),
        };
        // SAFETY: NULL or valid per the contract.
        let handler =
            unsafe { callbacks.as_ref() }.map(|cb| Arc::new(CHandler(*cb)) as Arc<dyn PeerHandler>);
        // SAFETY: NULL or a live runtime handle.
        let peer = match unsafe { rt.as_ref() } {
            Some(r) => Peer::with_runtime(&r.rt, config, handler)?,
            None => Peer::with_runtime(&Runtime::global()?, config, handler)?,
        };
        // SAFETY: checked non-NULL.
        unsafe {
            out.write(Box::into_raw(Box::new(SwrtcPeer {
                peer: Arc::new(peer),
                protocol: SwrtcProtocol::SWRTC_PROTOCOL_APP,
            })))
        };
        Ok(())
    })
}

/// Closes the peer (sends peerLeft if a channel is open), frees its ports and the handle.
/// NULL does nothing. When it returns, no callback of this peer runs any more (unless it
/// is called from inside one of them: that callback then finishes normally and no other
/// follows). Any thread; once per peer.
///
/// # Safety
/// `peer` is NULL or a live handle, not used again after this call.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_free(peer: *mut SwrtcPeer) {
    let _ = guard(|| {
        if !peer.is_null() {
            // SAFETY: from Box::into_raw in swrtc_peer_new; freed once per the contract.
            let handle = unsafe { Box::from_raw(peer) };
            // Not left to the last `Arc`: the signalling server may hold the peer a while
            // longer (a PATCH or renegotiation in flight), and the rule is about this call.
            handle.peer.detach_and_close();
            drop(handle);
        }
        Ok(())
    });
}

/// Answers an SDP offer (first or renegotiation) of `offer_len` bytes. On success
/// `*answer_out` is a NUL-terminated SDP answer (carrying host candidates) that the caller
/// frees with `swrtc_string_free`; `answer_len` (may be NULL) receives its length.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT`, `SWRTC_ERR_INVALID_SDP` (unparsable, no audio
/// m-line, rejected), `SWRTC_ERR_CLOSED`, `SWRTC_ERR_TIMEOUT`. Any thread; blocks until
/// the peer's I/O thread answers (typically well under a millisecond).
///
/// # Safety
/// `peer` live; `offer` readable for `offer_len` bytes; outputs writable or NULL.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_handle_offer(
    peer: *const SwrtcPeer,
    offer: *const c_char,
    offer_len: usize,
    answer_out: *mut *mut c_char,
    answer_len: *mut usize,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        if answer_out.is_null() {
            return Err(Error::invalid("answer_out is NULL"));
        }
        if offer_len == 0 {
            return Err(Error::new(ErrorKind::InvalidSdp, "the offer is empty"));
        }
        // SAFETY: contract.
        let sdp = unsafe { str_arg(offer, offer_len, "offer") }?;
        let answer = p.handle_offer(sdp)?;
        let len = answer.len();
        let c = CString::new(answer).map_err(|_| Error::internal("answer contains NUL"))?;
        // SAFETY: checked non-NULL; answer_len is NULL or writable.
        unsafe {
            answer_out.write(c.into_raw());
            if !answer_len.is_null() {
                answer_len.write(len);
            }
        }
        Ok(())
    })
}

/// Adds a trickled remote ICE candidate (`candidate:…`, with or without `a=`). Length 0
/// (and `candidate` NULL) means end-of-candidates.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT`, `SWRTC_ERR_INVALID_CANDIDATE`, `SWRTC_ERR_CLOSED`.
/// Any thread.
///
/// # Safety
/// `peer` live; `candidate` readable for `len` bytes or NULL with len 0.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_add_ice_candidate(
    peer: *const SwrtcPeer,
    candidate: *const c_char,
    len: usize,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        // SAFETY: contract.
        let c = unsafe { str_arg(candidate, len, "candidate") }?;
        p.add_ice_candidate(c)
    })
}

/// The app is ready: `SWRTC_PEER_CONNECTED` is delivered (at once if already connected),
/// then app messages held so far, in order. Counted: each connect needs a disconnect.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT`, `SWRTC_ERR_CLOSED`. Any thread, callbacks too.
///
/// # Safety
/// `peer` is a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_connect(peer: *const SwrtcPeer) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        unsafe { peer_ref(peer) }?.connect()
    })
}

/// Undoes one connect. The last one sends peerLeft, closes the peer and frees its ports;
/// `SWRTC_PEER_CLOSED` follows. The handle stays valid until `swrtc_peer_free`.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT`, `SWRTC_ERR_CLOSED`. Any thread, callbacks too.
///
/// # Safety
/// `peer` is a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_disconnect(peer: *const SwrtcPeer) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        unsafe { peer_ref(peer) }?.disconnect()
    })
}

/// Sends an app message of `len` bytes (1..=65536) on the client's data channel, in order.
/// Before the channel opens, up to 50 are queued and flushed on open.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL, empty), `SWRTC_ERR_TOO_LARGE`,
/// `SWRTC_ERR_WOULD_BLOCK` (50 already queued; dropped), `SWRTC_ERR_NOT_CONNECTED` (no
/// channel 10 s after connecting; dropped), `SWRTC_ERR_CLOSED`. Any thread, callbacks too.
///
/// # Safety
/// `peer` live; `data` readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_send_message(
    peer: *const SwrtcPeer,
    data: *const u8,
    len: usize,
    binary: bool,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        if data.is_null() || len == 0 {
            return Err(Error::invalid("message is NULL or empty"));
        }
        // SAFETY: non-NULL, `len` readable bytes per the contract.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        p.send_message(bytes, binary)
    })
}

/// Pulls the next event of a peer created without callbacks (with callbacks, events go
/// there and this finds none). Waits up to `timeout_ms` (0: do not wait). On success
/// `*out` is filled; release it with `swrtc_event_clear`.
///
/// Errors: `SWRTC_ERR_WOULD_BLOCK` (none, timeout 0), `SWRTC_ERR_TIMEOUT`,
/// `SWRTC_ERR_INVALID_ARGUMENT`. Any thread; events go to one caller each.
///
/// # Safety
/// `peer` live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_poll_event(
    peer: *const SwrtcPeer,
    timeout_ms: u32,
    out: *mut SwrtcEvent,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms.into()));
        let Some(ev) = p.poll_event(timeout) else {
            return Err(if timeout.is_some() {
                Error::new(ErrorKind::Timeout, "no event within the timeout")
            } else {
                Error::new(ErrorKind::WouldBlock, "no event queued")
            });
        };
        let mut e = SwrtcEvent {
            kind: SwrtcEventKind::SWRTC_EVENT_STATE,
            state: p.state().into(),
            data: std::ptr::null_mut(),
            len: 0,
            binary: false,
            receiver_index: 0,
            enabled: false,
        };
        match ev {
            PeerEvent::State(s) => e.state = s.into(),
            PeerEvent::Message { data, binary } => {
                e.kind = SwrtcEventKind::SWRTC_EVENT_MESSAGE;
                e.len = data.len();
                e.binary = binary;
                let mut z = data;
                z.push(0);
                e.data = Box::into_raw(z.into_boxed_slice()) as *mut u8;
            }
            PeerEvent::TrackStatus {
                receiver_index,
                enabled,
            } => {
                e.kind = SwrtcEventKind::SWRTC_EVENT_TRACK_STATUS;
                e.receiver_index = receiver_index;
                e.enabled = enabled;
            }
        }
        // SAFETY: checked non-NULL.
        unsafe { out.write(e) };
        Ok(())
    })
}

/// Releases what an event owns (its message data) and zeroes it. NULL does nothing; a
/// cleared event may be cleared again. Any thread.
///
/// # Safety
/// `ev` is NULL or an event filled by `swrtc_peer_poll_event`.
#[no_mangle]
pub unsafe extern "C" fn swrtc_event_clear(ev: *mut SwrtcEvent) {
    let _ = guard(|| {
        // SAFETY: NULL or valid per the contract.
        if let Some(e) = unsafe { ev.as_mut() } {
            if !e.data.is_null() {
                let slice = std::ptr::slice_from_raw_parts_mut(e.data, e.len + 1);
                // SAFETY: allocated in swrtc_peer_poll_event as a boxed slice of len + 1.
                drop(unsafe { Box::from_raw(slice) });
            }
            e.data = std::ptr::null_mut();
            e.len = 0;
        }
        Ok(())
    });
}

/// The peer's state as the app sees it. Any thread, callbacks too.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `peer` live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_state(
    peer: *const SwrtcPeer,
    out: *mut SwrtcPeerState,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        // SAFETY: checked non-NULL.
        unsafe { out.write(p.state().into()) };
        Ok(())
    })
}

/// The peer's counters. Any thread, callbacks too.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT`, `SWRTC_ERR_CLOSED` (peer already gone).
///
/// # Safety
/// `peer` live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_get_stats(
    peer: *const SwrtcPeer,
    out: *mut SwrtcPeerStats,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let s = p.stats()?;
        let c = SwrtcPeerStats {
            datagrams_in: s.datagrams_in,
            datagrams_dropped: s.datagrams_dropped,
            datagrams_out: s.datagrams_out,
            pings_in: s.pings_in,
            messages_in: s.messages_in,
            messages_out: s.messages_out,
            messages_out_dropped: s.messages_out_dropped,
            messages_in_dropped: s.messages_in_dropped,
            events_dropped: p.events_dropped(),
            audio_packets_in: s.audio_packets_in,
            early_held: s.early_held,
            early_delivered: s.early_delivered,
            early_dropped: s.early_dropped,
        };
        // SAFETY: checked non-NULL.
        unsafe { out.write(c) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count(std::sync::atomic::AtomicUsize);
    impl PeerHandler for Count {
        fn on_event(&self, _: &PeerEvent) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The signalling server may still hold the peer (a request in flight) when the app
    /// frees its handle: the callbacks go with the handle, not with the last reference.
    #[test]
    fn free_detaches_callbacks_while_the_server_still_holds_the_peer() {
        let cfg = crate::PeerConfig {
            bind_ip: Some("127.0.0.1".parse().unwrap()),
            ..crate::PeerConfig::default()
        };
        let handler = Arc::new(Count(Default::default()));
        let peer = Arc::new(Peer::new(cfg, Some(handler.clone())).unwrap());
        peer.set_audio_callback(Some(Box::new(|_| {}))).unwrap();
        assert!(peer.has_callbacks());
        let held_by_server = peer.clone();
        let handle = Box::into_raw(Box::new(SwrtcPeer::from_shared(
            peer,
            SwrtcProtocol::SWRTC_PROTOCOL_PIPECAT,
        )));
        // SAFETY: a live handle, freed once.
        unsafe { swrtc_peer_free(handle) };
        assert!(
            !held_by_server.has_callbacks(),
            "callbacks outlive the free"
        );
        // And it closes (on its I/O thread, just after).
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while held_by_server.state() != PeerState::Closed {
            assert!(std::time::Instant::now() < until, "never closed");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
