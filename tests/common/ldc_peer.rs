//! A libdatachannel peer (through its C API, `datachannel-sys`) that behaves like Pipecat's
//! C++ SmallWebRTC transport, for tests and benches against the HTTP signalling server over
//! real UDP on 127.0.0.1.
//!
//! # What it does like the C++ transport
//! * One audio sendrecv m-line (mid `"0"`, Opus on payload type 111, one SSRC) and the
//!   client-created `"chat"` data channel, in that order.
//! * No trickle: the offer is read only once ICE gathering is complete, so it carries every
//!   candidate; it is POSTed as `{"sdp", "type": "offer"}` to `/api/offer`.
//! * Once the channel opens: `ping: <unix ms>` every second (like the JS client's timer)
//!   if `pings`; [`LdcPeer::send_client_ready`] sends the RTVI client-ready.
//! * Audio goes out as whole RTP packets written on the libdatachannel track (no packetizer:
//!   libdatachannel only protects them with SRTP); received RTP comes back as
//!   [`LdcEvent::Rtp`] (RTCP is filtered out).
//! * [`LdcPeer::close`] closes the data channel (SCTP stream reset) and then the peer
//!   connection (SCTP and DTLS goodbyes), as the C++ transport's disconnect does.
//!
//! # Callbacks
//! libdatachannel calls back on its own threads with a user pointer. The pointer is not an
//! address but a key into a process-wide table of event senders: when a peer is dropped its
//! entry is removed after `rtcDeletePeerConnection`, so a callback already under way finds
//! nothing instead of freed memory. Events go through a bounded queue; what does not fit is
//! dropped and counted ([`LdcPeer::dropped_events`]), so a test that ignores audio cannot grow
//! memory without bound.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use datachannel_sys as sys;

/// Opus payload type of the offer (what browsers and the C++ transport use).
pub const OPUS_PT: u8 = 111;
/// Events kept for the test before new ones are dropped (about 80 s of audio packets).
const EVENT_QUEUE: usize = 4096;
/// Backlog bound for `wait_for` (oldest events are dropped beyond it).
const MAX_BACKLOG: usize = 8192;
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// After closing the data channel, how long the peer connection stays up for the stream
/// reset to go out before the connection itself is closed.
const CLOSE_GRACE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq)]
pub enum LdcEvent {
    /// ICE gathering is complete: the local description carries every candidate.
    GatheringComplete,
    /// Peer connection state, lower case: new, connecting, connected, disconnected,
    /// failed, closed.
    State(&'static str),
    /// The "chat" channel opened.
    ChannelOpen,
    /// The "chat" channel closed (by either side).
    ChannelClosed,
    /// A text (or lossily converted binary) message on the channel.
    Message(String),
    /// One received RTP packet on the audio track.
    Rtp {
        pt: u8,
        seq: u16,
        ts: u32,
        payload: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
pub struct LdcOptions {
    /// Address libjuice binds to and gathers from (loopback keeps the offer to one candidate).
    pub bind: String,
    /// Send `ping: <unix ms>` every second once the channel is open.
    pub pings: bool,
}

impl Default for LdcOptions {
    fn default() -> Self {
        LdcOptions {
            bind: "127.0.0.1".into(),
            pings: true,
        }
    }
}

struct Entry {
    tx: Sender<LdcEvent>,
    dropped: Arc<AtomicU64>,
    /// Whether the channel is open (the pinger sends only then).
    open: Arc<AtomicBool>,
}

fn table() -> &'static Mutex<HashMap<usize, Entry>> {
    static T: OnceLock<Mutex<HashMap<usize, Entry>>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(HashMap::new()))
}

fn emit(ptr: *mut c_void, ev: LdcEvent) {
    let key = ptr as usize;
    let Ok(t) = table().lock() else { return };
    let Some(e) = t.get(&key) else { return };
    match &ev {
        LdcEvent::ChannelOpen => e.open.store(true, Ordering::SeqCst),
        LdcEvent::ChannelClosed => e.open.store(false, Ordering::SeqCst),
        _ => {}
    }
    if let Err(TrySendError::Full(_)) = e.tx.try_send(ev) {
        e.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs a callback body without letting a panic unwind into C++.
fn guarded(f: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
}

unsafe extern "C" fn on_state(_pc: c_int, state: sys::rtcState, ptr: *mut c_void) {
    guarded(|| {
        let s = match state {
            sys::rtcState_RTC_NEW => "new",
            sys::rtcState_RTC_CONNECTING => "connecting",
            sys::rtcState_RTC_CONNECTED => "connected",
            sys::rtcState_RTC_DISCONNECTED => "disconnected",
            sys::rtcState_RTC_FAILED => "failed",
            sys::rtcState_RTC_CLOSED => "closed",
            _ => "unknown",
        };
        emit(ptr, LdcEvent::State(s));
    });
}

unsafe extern "C" fn on_gathering(_pc: c_int, state: sys::rtcGatheringState, ptr: *mut c_void) {
    guarded(|| {
        if state == sys::rtcGatheringState_RTC_GATHERING_COMPLETE {
            emit(ptr, LdcEvent::GatheringComplete);
        }
    });
}

unsafe extern "C" fn on_dc_open(_id: c_int, ptr: *mut c_void) {
    guarded(|| emit(ptr, LdcEvent::ChannelOpen));
}

unsafe extern "C" fn on_dc_closed(_id: c_int, ptr: *mut c_void) {
    guarded(|| emit(ptr, LdcEvent::ChannelClosed));
}

/// When libdatachannel last rejected a certificate (to place it against
/// `rtcSetRemoteDescription` in a connect's error).
static LAST_VERIFY_FAILURE: Mutex<Option<Instant>> = Mutex::new(None);

/// Process-wide time origin of the log's timestamps.
fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

/// Milliseconds since [`epoch`], for log lines from several threads.
fn stamp(t: Instant) -> f64 {
    t.saturating_duration_since(epoch()).as_secs_f64() * 1e3
}

unsafe extern "C" fn on_log(level: sys::rtcLogLevel, message: *const c_char) {
    if message.is_null() {
        return;
    }
    let text = CStr::from_ptr(message).to_string_lossy();
    guarded(|| {
        let now = Instant::now();
        // OpenSSL's verify failure: libdatachannel's fingerprint check returned false.
        if text.contains("certificate verify failed") {
            if let Ok(mut t) = LAST_VERIFY_FAILURE.lock() {
                *t = Some(now);
            }
        }
        eprintln!("libdatachannel {:.3} ms [{level}]: {text}", stamp(now))
    });
}

/// A connected peer: the pc_id and the time from the POST to the open channel.
pub struct Connected {
    pub peer: LdcPeer,
    pub pc_id: String,
    pub took: Duration,
}

/// A new peer connected to `server` in one attempt (no retry: a connect that fails is a
/// failure of the test or bench).
pub fn connect_new(server: SocketAddr, within: Duration) -> Result<Connected, String> {
    let mut peer = LdcPeer::new(LdcOptions::default())?;
    let (pc_id, took) = peer.connect(server, within)?;
    Ok(Connected { peer, pc_id, took })
}

/// `size < 0` means a NUL-terminated text message (libdatachannel's convention).
unsafe fn message_bytes<'a>(msg: *const c_char, size: c_int) -> Option<&'a [u8]> {
    if msg.is_null() {
        return None;
    }
    if size < 0 {
        Some(CStr::from_ptr(msg).to_bytes())
    } else {
        Some(std::slice::from_raw_parts(msg as *const u8, size as usize))
    }
}

unsafe extern "C" fn on_dc_message(_id: c_int, msg: *const c_char, size: c_int, ptr: *mut c_void) {
    let Some(bytes) = message_bytes(msg, size) else {
        return;
    };
    guarded(|| {
        emit(
            ptr,
            LdcEvent::Message(String::from_utf8_lossy(bytes).into_owned()),
        )
    });
}

unsafe extern "C" fn on_track_message(
    _id: c_int,
    msg: *const c_char,
    size: c_int,
    ptr: *mut c_void,
) {
    let Some(p) = message_bytes(msg, size) else {
        return;
    };
    guarded(|| {
        // RTP only (RFC 5761: payload types 64..=95 with the marker bit masked are RTCP).
        if p.len() < 12 || p[0] >> 6 != 2 || (64..=95).contains(&(p[1] & 0x7f)) {
            return;
        }
        let csrc = (p[0] & 0x0f) as usize * 4;
        let mut start = 12 + csrc;
        if p[0] & 0x10 != 0 {
            // Header extension: 4-byte header, then `length` 32-bit words.
            if p.len() < start + 4 {
                return;
            }
            let words = u16::from_be_bytes([p[start + 2], p[start + 3]]) as usize;
            start += 4 + words * 4;
        }
        let mut end = p.len();
        if p[0] & 0x20 != 0 {
            end = end.saturating_sub(*p.last().unwrap_or(&0) as usize);
        }
        if start > end {
            return;
        }
        emit(
            ptr,
            LdcEvent::Rtp {
                pt: p[1] & 0x7f,
                seq: u16::from_be_bytes([p[2], p[3]]),
                ts: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
                payload: p[start..end].to_vec(),
            },
        );
    });
}

/// Reads one of libdatachannel's string getters (size query, then copy).
fn read_string(
    id: c_int,
    f: unsafe extern "C" fn(c_int, *mut c_char, c_int) -> c_int,
) -> Option<String> {
    let size = unsafe { f(id, std::ptr::null_mut(), 0) };
    if size <= 0 {
        return None;
    }
    let mut buf = vec![0u8; size as usize];
    let n = unsafe { f(id, buf.as_mut_ptr() as *mut c_char, size) };
    if n < 0 {
        return None;
    }
    let text = CStr::from_bytes_until_nul(&buf).ok()?;
    Some(text.to_string_lossy().into_owned())
}

fn check(what: &str, rc: c_int) -> Result<c_int, String> {
    if rc < 0 {
        Err(format!("libdatachannel {what} failed: error {rc}"))
    } else {
        Ok(rc)
    }
}

pub fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The RTVI client-ready message (what Pipecat clients send once the channel is open).
pub fn client_ready_json(id: &str) -> String {
    serde_json::json!({
        "label": "rtvi-ai", "type": "client-ready", "id": id,
        "data": {"version": "1.0.0", "about": {"library": "libdatachannel-test"}}
    })
    .to_string()
}

pub struct LdcPeer {
    pc: c_int,
    dc: c_int,
    tr: c_int,
    key: usize,
    events: Receiver<LdcEvent>,
    backlog: VecDeque<LdcEvent>,
    dropped: Arc<AtomicU64>,
    open: Arc<AtomicBool>,
    ssrc: u32,
    seq: u16,
    /// Stops the pinger thread when dropped (its receiver sees the disconnect).
    pinger_stop: Option<Sender<()>>,
    pinger: Option<JoinHandle<()>>,
    closed: bool,
    /// When `rtcSetRemoteDescription` was called and when it returned.
    set_remote: Option<(Instant, Instant)>,
}

impl LdcPeer {
    /// A peer connection with its audio track and "chat" channel, gathering already started.
    pub fn new(opts: LdcOptions) -> Result<LdcPeer, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        static LOG: std::sync::Once = std::sync::Once::new();
        // libdatachannel's own log, to stderr: warnings, or more with SWRTC_LDC_LOG=debug|verbose.
        LOG.call_once(|| {
            let level = match std::env::var("SWRTC_LDC_LOG").as_deref() {
                Ok("verbose") => sys::rtcLogLevel_RTC_LOG_VERBOSE,
                Ok("debug") => sys::rtcLogLevel_RTC_LOG_DEBUG,
                Ok("info") => sys::rtcLogLevel_RTC_LOG_INFO,
                _ => sys::rtcLogLevel_RTC_LOG_WARNING,
            };
            unsafe { sys::rtcInitLogger(level, Some(on_log)) }
        });
        epoch(); // the log's time origin: the first peer
        let key = NEXT.fetch_add(1, Ordering::Relaxed);
        let (tx, events) = bounded(EVENT_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicBool::new(false));
        table().lock().map_err(|_| "event table poisoned")?.insert(
            key,
            Entry {
                tx,
                dropped: dropped.clone(),
                open: open.clone(),
            },
        );
        let bind = CString::new(opts.bind.clone()).map_err(|e| e.to_string())?;
        let config = sys::rtcConfiguration {
            iceServers: std::ptr::null_mut(),
            iceServersCount: 0,
            proxyServer: std::ptr::null(),
            bindAddress: bind.as_ptr(),
            certificateType: sys::rtcCertificateType_RTC_CERTIFICATE_DEFAULT,
            iceTransportPolicy: sys::rtcTransportPolicy_RTC_TRANSPORT_POLICY_ALL,
            enableIceTcp: false,
            enableIceUdpMux: false,
            // The offer is made once, explicitly, after the track and channel exist.
            disableAutoNegotiation: true,
            forceMediaTransport: false,
            portRangeBegin: 0,
            portRangeEnd: 0,
            mtu: 0,
            maxMessageSize: 0,
        };
        let ptr = key as *mut c_void;
        let mut peer = LdcPeer {
            pc: -1,
            dc: -1,
            tr: -1,
            key,
            events,
            backlog: VecDeque::new(),
            dropped,
            open,
            ssrc: 0x4c44_4300 | (key as u32 & 0xff),
            seq: 0,
            pinger_stop: None,
            pinger: None,
            closed: false,
            set_remote: None,
        };
        unsafe {
            peer.pc = check(
                "create peer connection",
                sys::rtcCreatePeerConnection(&config),
            )?;
            sys::rtcSetUserPointer(peer.pc, ptr);
            check(
                "state callback",
                sys::rtcSetStateChangeCallback(peer.pc, Some(on_state)),
            )?;
            check(
                "gathering callback",
                sys::rtcSetGatheringStateChangeCallback(peer.pc, Some(on_gathering)),
            )?;

            let mid = CString::new("0").unwrap_or_default();
            let name = CString::new("audio").unwrap_or_default();
            let msid = CString::new("ldc-stream").unwrap_or_default();
            let track_id = CString::new("ldc-audio").unwrap_or_default();
            let init = sys::rtcTrackInit {
                direction: sys::rtcDirection_RTC_DIRECTION_SENDRECV,
                codec: sys::rtcCodec_RTC_CODEC_OPUS,
                payloadType: OPUS_PT as c_int,
                ssrc: peer.ssrc,
                mid: mid.as_ptr(),
                name: name.as_ptr(),
                msid: msid.as_ptr(),
                trackId: track_id.as_ptr(),
                profile: std::ptr::null(),
            };
            peer.tr = check("add audio track", sys::rtcAddTrackEx(peer.pc, &init))?;
            sys::rtcSetUserPointer(peer.tr, ptr);
            check(
                "track message callback",
                sys::rtcSetMessageCallback(peer.tr, Some(on_track_message)),
            )?;

            let label = CString::new("chat").unwrap_or_default();
            peer.dc = check(
                "create data channel",
                sys::rtcCreateDataChannel(peer.pc, label.as_ptr()),
            )?;
            sys::rtcSetUserPointer(peer.dc, ptr);
            check(
                "open callback",
                sys::rtcSetOpenCallback(peer.dc, Some(on_dc_open)),
            )?;
            check(
                "closed callback",
                sys::rtcSetClosedCallback(peer.dc, Some(on_dc_closed)),
            )?;
            check(
                "message callback",
                sys::rtcSetMessageCallback(peer.dc, Some(on_dc_message)),
            )?;

            let offer = CString::new("offer").unwrap_or_default();
            check(
                "set local description",
                sys::rtcSetLocalDescription(peer.pc, offer.as_ptr()),
            )?;
        }
        if opts.pings {
            let (stop_tx, stop_rx) = bounded::<()>(1);
            let (dc, open) = (peer.dc, peer.open.clone());
            peer.pinger_stop = Some(stop_tx);
            peer.pinger = Some(
                std::thread::Builder::new()
                    .name(format!("ldc-ping-{key}"))
                    .spawn(move || loop {
                        match stop_rx.recv_timeout(PING_INTERVAL) {
                            Err(RecvTimeoutError::Timeout) => {}
                            _ => return,
                        }
                        if open.load(Ordering::SeqCst) {
                            let text =
                                CString::new(format!("ping: {}", unix_ms())).unwrap_or_default();
                            // -1: a text message, NUL-terminated.
                            unsafe { sys::rtcSendMessage(dc, text.as_ptr(), -1) };
                        }
                    })
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(peer)
    }

    /// The full offer, once gathering is complete (no trickle).
    pub fn offer(&mut self, within: Duration) -> Result<String, String> {
        self.wait_for(within, |e| *e == LdcEvent::GatheringComplete)
            .ok_or("ICE gathering did not complete")?;
        read_string(self.pc, sys::rtcGetLocalDescription)
            .ok_or_else(|| "no local description".into())
    }

    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        let sdp = CString::new(sdp).map_err(|e| e.to_string())?;
        let ty = CString::new("answer").unwrap_or_default();
        let called = Instant::now();
        let rc = unsafe { sys::rtcSetRemoteDescription(self.pc, sdp.as_ptr(), ty.as_ptr()) };
        let returned = Instant::now();
        self.set_remote = Some((called, returned));
        if std::env::var_os("SWRTC_LDC_LOG").is_some() {
            eprintln!(
                "libdatachannel {:.3} ms: rtcSetRemoteDescription called, returned at {:.3} ms",
                stamp(called),
                stamp(returned)
            );
        }
        check("set remote description", rc)?;
        Ok(())
    }

    /// Where a certificate rejection during this peer's connect fell against
    /// `rtcSetRemoteDescription` (empty if there was none): a rejection before the call
    /// returned is libdatachannel checking our certificate against an answer it has not
    /// stored yet.
    fn verify_failure_timing(&self) -> String {
        let Some((called, returned)) = self.set_remote else {
            return String::new();
        };
        let failed = LAST_VERIFY_FAILURE.lock().ok().and_then(|t| *t);
        match failed {
            Some(f) if f >= called => format!(
                "; certificate rejected {:.3} ms after rtcSetRemoteDescription was called, \
                 which returned after {:.3} ms",
                (f - called).as_secs_f64() * 1e3,
                (returned - called).as_secs_f64() * 1e3
            ),
            _ => String::new(),
        }
    }

    /// Gathers, POSTs the offer to `server`'s `/api/offer`, applies the answer and waits for
    /// the channel to open. Returns the pc_id and the time from the POST to the open channel.
    pub fn connect(
        &mut self,
        server: SocketAddr,
        within: Duration,
    ) -> Result<(String, Duration), String> {
        let offer = self.offer(within)?;
        let t0 = Instant::now();
        let answer = crate::common::offer::post_offer(server, &offer);
        let sdp = answer["sdp"].as_str().ok_or("the answer has no sdp")?;
        let pc_id = answer["pc_id"].as_str().unwrap_or_default().to_owned();
        self.accept_answer(sdp)?;
        match self.wait_for(within, |e| {
            matches!(
                e,
                LdcEvent::ChannelOpen | LdcEvent::State("failed" | "closed")
            )
        }) {
            Some(LdcEvent::ChannelOpen) => {}
            Some(other) => {
                return Err(format!(
                    "the connection ended before the channel opened: {other:?}{}",
                    self.verify_failure_timing()
                ))
            }
            None => {
                return Err(format!(
                    "the data channel did not open{}",
                    self.verify_failure_timing()
                ))
            }
        }
        Ok((pc_id, t0.elapsed()))
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Sends a text message on the channel.
    pub fn send_text(&self, text: &str) -> Result<(), String> {
        let c = CString::new(text).map_err(|e| e.to_string())?;
        check("send message", unsafe {
            sys::rtcSendMessage(self.dc, c.as_ptr(), -1)
        })?;
        Ok(())
    }

    pub fn send_client_ready(&self, id: &str) -> Result<(), String> {
        self.send_text(&client_ready_json(id))
    }

    /// Sends one Opus packet as an RTP packet on the audio track (`rtp_ts` at 48 kHz).
    pub fn send_opus(&mut self, payload: &[u8], rtp_ts: u32) -> Result<(), String> {
        let mut p = Vec::with_capacity(12 + payload.len());
        p.push(0x80);
        p.push(OPUS_PT);
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&rtp_ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        check("send rtp", unsafe {
            sys::rtcSendMessage(self.tr, p.as_ptr() as *const c_char, p.len() as c_int)
        })?;
        Ok(())
    }

    /// Waits up to `within` for an event matching `pred`; the events before it stay in the
    /// backlog for later calls.
    pub fn wait_for(
        &mut self,
        within: Duration,
        pred: impl Fn(&LdcEvent) -> bool,
    ) -> Option<LdcEvent> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) if pred(&ev) => return Some(ev),
                Ok(ev) => {
                    if self.backlog.len() >= MAX_BACKLOG {
                        self.backlog.pop_front();
                    }
                    self.backlog.push_back(ev);
                }
                Err(_) => return None,
            }
        }
    }

    /// Every event so far (backlog first), without waiting.
    pub fn take_events(&mut self) -> Vec<LdcEvent> {
        let mut out: Vec<LdcEvent> = self.backlog.drain(..).collect();
        out.extend(self.events.try_iter());
        out
    }

    /// Events dropped because the queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Closes the channel (SCTP stream reset), then the connection, as a client's disconnect.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.pinger_stop = None;
        if let Some(t) = self.pinger.take() {
            let _ = t.join();
        }
        unsafe { sys::rtcClose(self.dc) };
        // The channel reports closed at once, but the stream reset leaves on usrsctp's
        // thread; closing the connection right away can tear the transport down before it
        // (upstream libdatachannel sends no DTLS close_notify either, unlike Pipecat's patched
        // build), and the server would only notice at its consent timeout. So the connection
        // stays up a moment for the reset to go out.
        std::thread::sleep(CLOSE_GRACE);
        unsafe { sys::rtcClosePeerConnection(self.pc) };
    }
}

impl Drop for LdcPeer {
    fn drop(&mut self) {
        self.pinger_stop = None;
        if let Some(t) = self.pinger.take() {
            let _ = t.join();
        }
        // The channel and track ids live in libdatachannel's tables until deleted too.
        unsafe {
            if self.dc >= 0 {
                sys::rtcDeleteDataChannel(self.dc);
            }
            if self.tr >= 0 {
                sys::rtcDeleteTrack(self.tr);
            }
            if self.pc >= 0 {
                sys::rtcDeletePeerConnection(self.pc);
            }
        }
        if let Ok(mut t) = table().lock() {
            t.remove(&self.key);
        }
    }
}
