//! A str0m-based WebRTC peer that behaves like Pipecat's SmallWebRTC JS client
//! (`@pipecat-ai/small-webrtc-transport`), for integration tests that talk to
//! the server over real UDP on 127.0.0.1.
//!
//! Depends only on std, str0m, serde_json, crossbeam-channel and tracing, so it
//! compiles on its own (no smallwebrtc imports).
//!
//! # What it does like the JS client
//! * One offer with the m-lines in the browser's order and the browser's mids:
//!   audio sendrecv (`"0"`), video sendrecv (`"1"`), optionally a screen video
//!   sendonly (`"2"`), then the `m=application` line of the client-created data
//!   channel (the next mid). Mids are assigned by position, so with
//!   `audio: false` the first present m-line is `"0"`.
//! * The offer carries the client's host candidate `127.0.0.1:<port>`; more
//!   remote candidates can be trickled in with [`TestClient::add_remote_candidate`]
//!   (`candidate:...`, `a=candidate:...`, or `""` for end-of-candidates).
//!   [`TestClient::local_candidate`] gives the string to PATCH if a test wants to
//!   trickle the client's own candidate too.
//! * When the data channel opens: `trackStatus` (receiver_index 0, enabled) if
//!   `track_status`, then `ping: <unix ms>` every second (first one 1 s after
//!   open, like the JS `setInterval`) if `pings`.
//! * Text sent before the channel opens is queued and flushed on open.
//! * [`TestClient::close`] closes the data channel (SCTP stream reset, which the
//!   server sees as a channel close) and then stops; [`TestClient::abort`]
//!   vanishes without a word (for liveness tests).
//!
//! It does not encode media: tests hand it ready Opus packets
//! ([`TestClient::send_opus`]); [`TestClient::next_tone_frame`] makes the PCM
//! (a `tone_hz` sine, 20 ms at 48 kHz) for the test to encode. No video is sent.
//!
//! # How the browser mids are obtained from str0m (str0m 0.25 gotcha)
//! `SdpApi::add_media` always picks random 3-character mids, and the mids also
//! travel inside every RTP packet (the `sdes:mid` header extension), so simply
//! renaming them in the SDP text would break RTP demuxing. So:
//! 1. `offer()` builds the offer with `sdp_api()` (`add_media` ×N,
//!    `add_channel`, `apply`) and renames the mids to `"0"`, `"1"`, ... in the
//!    text (the `a=mid` lines and `a=group:BUNDLE`). The pending offer is dropped.
//! 2. `accept_answer()` (first time) starts DTLS in the role the answer's
//!    `a=setup` implies (before anything else, so str0m keeps the ICE
//!    *controlling* role it took when it created the offer) and then feeds the
//!    server's answer to the same `Rtc` **as if it were a remote offer**
//!    (`accept_offer`). str0m then builds its session from that SDP: the mids
//!    are the server's (= ours, `"0"`, `"1"`, ...), the directions are inverted
//!    correctly (answer `recvonly` → our `sendonly`), the codecs/extension ids
//!    are the negotiated ones, and the server's candidates and SSRCs are taken.
//!    The send SSRCs str0m made up are then reset (`DirectApi::reset_stream_tx`)
//!    to the ones announced in our offer, and the "chat" channel is created
//!    (no negotiation needed once the application m-line exists).
//!    Side effect: the `add_channel` of step 1 leaves an unconfirmed channel
//!    allocation, so the real channel uses SCTP stream id 2 instead of 0.
//! 3. `renegotiate()`: str0m's `SdpApi::apply()` returns `None` when nothing
//!    changed, so a plain "same state" re-offer (what a browser makes on
//!    `{"type":"renegotiate"}`) is impossible. We toggle the direction of one
//!    m-line away and back inside the same `SdpApi` (video `"1"` if present, else
//!    the first m-line): two `Direction` changes make `apply()` produce an offer,
//!    and the offer shows the final (= current) direction, so the SDP re-sends
//!    the current state with the same ICE credentials (no ICE restart). Its
//!    answer goes through the normal `accept_answer(pending, answer)`. The toggle
//!    resets str0m's send buffer of that m-line (SendRecv → RecvOnly → SendRecv);
//!    we never send video, and on an audio-only client at most a packet queued
//!    in str0m is lost.
//!
//! # ICE over TCP
//! With `tcp_server` set, the client connects a TCP stream to that passive candidate of
//! the server before its offer, offers only a `tcptype active` candidate for the stream's
//! address (no UDP), and carries all its traffic on the stream as RFC 4571 frames (a
//! reader thread hands received frames to the client thread and wakes it).
//!
//! # Loss
//! `loss_percent` (a percentage, 0–100) drops that share of *outgoing RTP
//! media packets* right before `send_to`, decided by a seeded LCG, so the
//! server sees real sequence-number gaps (STUN, DTLS, SCTP and RTCP are never
//! dropped).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::config::CryptoProvider;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::Ssrc;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// How long the blocking calls (`offer`, `accept_answer`, ...) wait for the client thread.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `close` waits for the thread.
const JOIN_TIMEOUT: Duration = Duration::from_secs(1);
/// After closing the data channel, how long to keep the loop running so the
/// SCTP stream reset reaches the server.
const CLOSE_GRACE: Duration = Duration::from_millis(60);
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Longest socket wait, so commands are never starved even if a wake-up is lost.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Backlog bound for `wait_for` (oldest events are dropped beyond it).
const MAX_BACKLOG: usize = 50_000;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Put an audio sendrecv m-line in the offer (the mic).
    pub audio: bool,
    /// Put a video sendrecv m-line in the offer (the camera).
    pub video: bool,
    /// Put a second video m-line, sendonly, in the offer (screen share).
    pub screen: bool,
    /// Data channel label (browsers: "chat").
    pub label: String,
    /// Send `ping: <unix ms>` every second once the channel is open.
    pub pings: bool,
    /// Send the trackStatus signalling message when the channel opens.
    pub track_status: bool,
    /// Percentage (0–100) of outgoing RTP media packets to drop.
    pub loss_percent: f32,
    /// Frequency of the tone made by [`TestClient::next_tone_frame`].
    pub tone_hz: f32,
    /// Seed of the loss LCG.
    pub loss_seed: u64,
    /// Offer Opus RED (`red/48000/2`, as Chromium does); when the answer keeps it, str0m
    /// sends every audio packet with the previous one as redundancy and recovers lost
    /// packets from the server's RED.
    pub red: bool,
    /// Address to bind the UDP socket on (default 127.0.0.1).
    pub bind_ip: std::net::IpAddr,
    /// ICE over TCP to this passive candidate of the server instead of UDP (see the
    /// module docs).
    pub tcp_server: Option<SocketAddr>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            audio: true,
            video: true,
            screen: false,
            label: "chat".to_string(),
            pings: true,
            track_status: true,
            loss_percent: 0.0,
            tone_hz: 1000.0,
            loss_seed: 0x5eed_1234_abcd_0001,
            red: false,
            bind_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            tcp_server: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// ICE and DTLS are up (str0m `Event::Connected`).
    Connected,
    /// Our data channel opened (its label).
    ChannelOpen(String),
    /// Every message received on the data channel, including signalling JSON
    /// (binary messages are converted lossily to text).
    Message(String),
    /// ICE connection state, lower case: new, checking, connected, completed, disconnected.
    IceState(String),
    /// One received audio packet (str0m delivers Opus packets one by one;
    /// reordering is off, so they come as they arrive).
    AudioPacket {
        seq: u64,
        rtp_time: u64,
        len: usize,
        payload: Vec<u8>,
    },
    /// One received (depacketized) video frame.
    VideoPacket { mid: String, len: usize },
    /// The data channel was closed (by either side).
    ChannelClosed,
    /// ICE went disconnected, or the `Rtc` died. Reported once per transition.
    Disconnected,
}

/// Counters, readable at any time with [`TestClient::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Data channel messages written (including pings and trackStatus).
    pub messages_sent: u64,
    /// Data channel messages received.
    pub messages_received: u64,
    /// Opus packets accepted by `send_opus` (before loss).
    pub opus_written: u64,
    /// RTP media packets put on the wire.
    pub packets_sent: u64,
    /// RTP media packets dropped by `loss_percent`.
    pub packets_dropped: u64,
    pub audio_packets_received: u64,
    pub video_packets_received: u64,
}

#[derive(Default)]
struct Stats {
    messages_sent: AtomicU64,
    messages_received: AtomicU64,
    opus_written: AtomicU64,
    packets_sent: AtomicU64,
    packets_dropped: AtomicU64,
    audio_packets_received: AtomicU64,
    video_packets_received: AtomicU64,
}

impl Stats {
    fn snapshot(&self) -> ClientStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            messages_sent: g(&self.messages_sent),
            messages_received: g(&self.messages_received),
            opus_written: g(&self.opus_written),
            packets_sent: g(&self.packets_sent),
            packets_dropped: g(&self.packets_dropped),
            audio_packets_received: g(&self.audio_packets_received),
            video_packets_received: g(&self.video_packets_received),
        }
    }
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

enum Cmd {
    Offer(Sender<Result<String, String>>),
    Answer(String, Sender<Result<(), String>>),
    Renegotiate(Sender<Result<String, String>>),
    Candidate(String),
    Text(String),
    Opus(Vec<u8>, u64),
    Close { graceful: bool },
}

pub struct TestClient {
    cmd_tx: Sender<Cmd>,
    events: Receiver<ClientEvent>,
    backlog: Mutex<VecDeque<ClientEvent>>,
    stats: Arc<Stats>,
    loss_bits: Arc<AtomicU32>,
    /// Sends one-byte datagrams to the client's own socket to wake its thread.
    waker: UdpSocket,
    local_addr: SocketAddr,
    local_candidate: String,
    opts: ClientOptions,
    tone_pos: u64,
    thread: Option<JoinHandle<()>>,
    done_rx: Receiver<()>,
}

fn crypto() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(str0m::crypto::from_feature_flags()))
        .clone()
}

impl TestClient {
    pub fn new(opts: ClientOptions) -> TestClient {
        let socket = UdpSocket::bind((opts.bind_ip, 0)).expect("bind client UDP socket");
        let local_addr = socket.local_addr().expect("client local addr");
        let waker = UdpSocket::bind((opts.bind_ip, 0)).expect("bind waker socket");
        let wake_addr = waker.local_addr().expect("waker addr");

        let mut builder = Rtc::builder()
            .set_crypto_provider(crypto())
            // Deliver audio as it arrives (no 15-packet hold-back after a gap).
            .set_reordering_size_audio(0);
        if opts.red {
            // Re-adding Opus would move it behind the other audio codecs: only when asked.
            builder = builder
                .clear_codecs()
                .enable_opus(true, true)
                .enable_vp8(true);
        }
        let mut rtc = builder.build(Instant::now());
        let (cand, tcp, tcp_rx) = match opts.tcp_server {
            None => (
                Candidate::host(local_addr, "udp").expect("host candidate"),
                None,
                None,
            ),
            Some(server) => {
                let stream = TcpStream::connect_timeout(&server, CALL_TIMEOUT)
                    .expect("connect to the server's ICE-TCP port");
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().expect("TCP local addr");
                let cand = Candidate::builder()
                    .tcp()
                    .host(local)
                    .tcptype(str0m::net::TcpType::Active)
                    .build()
                    .expect("TCP candidate");
                let rx = read_tcp_frames(
                    stream.try_clone().expect("clone TCP stream"),
                    waker.try_clone().expect("clone waker"),
                    local_addr,
                );
                (cand, Some((stream, local, server)), Some(rx))
            }
        };
        let local_candidate = cand.to_sdp_string();
        rtc.add_local_candidate(cand);

        let (cmd_tx, cmd_rx) = unbounded();
        let (ev_tx, ev_rx) = unbounded();
        let (done_tx, done_rx) = bounded(1);
        let stats = Arc::new(Stats::default());
        let loss_bits = Arc::new(AtomicU32::new(opts.loss_percent.to_bits()));

        let mut worker = Worker {
            rtc,
            socket,
            local_addr,
            wake_addr,
            tcp,
            tcp_rx,
            opts: opts.clone(),
            events: ev_tx,
            stats: stats.clone(),
            loss_bits: loss_bits.clone(),
            lcg: opts.loss_seed,
            offer_text: None,
            negotiated: false,
            pending: None,
            cid: None,
            channel_open: false,
            out_queue: VecDeque::new(),
            next_ping: None,
            ice_disconnected: false,
            dead_reported: false,
            reoffers: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("str0m-client-{}", local_addr.port()))
            .spawn(move || {
                worker.run(cmd_rx);
                let _ = done_tx.send(());
            })
            .expect("spawn client thread");

        TestClient {
            cmd_tx,
            events: ev_rx,
            backlog: Mutex::new(VecDeque::new()),
            stats,
            loss_bits,
            waker,
            local_addr,
            local_candidate,
            opts,
            tone_pos: 0,
            thread: Some(thread),
            done_rx,
        }
    }

    /// The client's UDP address (127.0.0.1:port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The client's host candidate as `candidate:...` (for a PATCH).
    pub fn local_candidate(&self) -> String {
        self.local_candidate.clone()
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    fn send_cmd(&self, cmd: Cmd) {
        if self.cmd_tx.send(cmd).is_ok() {
            let _ = self.waker.send_to(&[0u8], self.local_addr);
        }
    }

    fn call<T>(&self, make: impl FnOnce(Sender<Result<T, String>>) -> Cmd) -> Result<T, String> {
        let (tx, rx) = bounded(1);
        self.send_cmd(make(tx));
        match rx.recv_timeout(CALL_TIMEOUT) {
            Ok(r) => r,
            Err(_) => Err("client thread did not answer (closed?)".into()),
        }
    }

    /// The SDP offer (call once; later offers come from [`Self::renegotiate`]).
    pub fn offer(&mut self) -> String {
        self.call(Cmd::Offer).expect("str0m client offer")
    }

    /// Applies the server's answer to the last offer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        self.call(|tx| Cmd::Answer(sdp.to_string(), tx))
    }

    /// A trickled remote candidate: `candidate:...`, `a=candidate:...`, or an
    /// empty string (end-of-candidates, ignored).
    pub fn add_remote_candidate(&mut self, cand: &str) {
        self.send_cmd(Cmd::Candidate(cand.to_string()));
    }

    /// A new offer on the same connection (same ICE credentials, same m-lines,
    /// see the module docs for how str0m is made to produce it). Follow it with
    /// [`Self::accept_answer`].
    pub fn renegotiate(&mut self) -> String {
        self.call(Cmd::Renegotiate).expect("str0m client re-offer")
    }

    /// Sends a text message on the data channel (queued until it opens).
    pub fn send_text(&self, text: &str) {
        self.send_cmd(Cmd::Text(text.to_string()));
    }

    /// Sends `{"type":"signalling","message":{"type":"trackStatus",...}}`.
    pub fn send_track_status(&self, receiver_index: u32, enabled: bool) {
        self.send_text(&track_status_json(receiver_index, enabled));
    }

    /// Writes one ready Opus packet on mid "0" (the first audio m-line) with the
    /// given RTP time at 48 kHz. Packets written before ICE connects are dropped
    /// by str0m. `loss_percent` applies to the resulting RTP packets.
    pub fn send_opus(&self, payload: Vec<u8>, rtp_time_48k: u64) {
        self.send_cmd(Cmd::Opus(payload, rtp_time_48k));
    }

    /// Changes the outgoing loss percentage (0–100) at once.
    pub fn set_loss_percent(&self, percent: f32) {
        self.loss_bits.store(percent.to_bits(), Ordering::Relaxed);
    }

    /// The next 20 ms (960 samples, mono, 48 kHz) of a `tone_hz` sine at about
    /// -10 dBFS, continuous across calls. Encode it with Opus and pass it to
    /// [`Self::send_opus`] with `rtp_time = frame_index * 960`.
    pub fn next_tone_frame(&mut self) -> Vec<i16> {
        let f = tone(self.opts.tone_hz, self.tone_pos, 960, 48_000);
        self.tone_pos += 960;
        f
    }

    pub fn stats(&self) -> ClientStats {
        self.stats.snapshot()
    }

    /// Waits up to `deadline` for an event matching `pred`; events that do not
    /// match are kept (in order) for later waits. Returns `None` on timeout.
    pub fn wait_for(
        &self,
        deadline: Duration,
        pred: impl Fn(&ClientEvent) -> bool,
    ) -> Option<ClientEvent> {
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = backlog.iter().position(&pred) {
            return backlog.remove(pos);
        }
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) if pred(&ev) => return Some(ev),
                Ok(ev) => {
                    if backlog.len() >= MAX_BACKLOG {
                        backlog.pop_front();
                    }
                    backlog.push_back(ev);
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    // Thread gone: no more events can come.
                    return None;
                }
            }
        }
    }

    /// Waits for the next data channel message satisfying `pred`.
    pub fn wait_message(&self, deadline: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        match self.wait_for(
            deadline,
            |e| matches!(e, ClientEvent::Message(m) if pred(m)),
        ) {
            Some(ClientEvent::Message(m)) => Some(m),
            _ => None,
        }
    }

    /// Everything received so far and not yet taken by a wait (backlog first).
    pub fn take_events(&self) -> Vec<ClientEvent> {
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<ClientEvent> = backlog.drain(..).collect();
        v.extend(self.events.try_iter());
        v
    }

    /// Closes the data channel (like the JS client's disconnect) and stops the
    /// thread, waiting at most 1 s for it. Idempotent.
    pub fn close(&mut self) {
        self.stop(true);
    }

    /// Stops the thread without closing the data channel: the client just
    /// goes silent, as a crashed or unplugged browser would.
    pub fn abort(&mut self) {
        self.stop(false);
    }

    fn stop(&mut self, graceful: bool) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.send_cmd(Cmd::Close { graceful });
        match self.done_rx.recv_timeout(JOIN_TIMEOUT) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
            }
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!("str0m test client thread did not stop within 1 s; detaching");
            }
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.close();
    }
}

pub fn track_status_json(receiver_index: u32, enabled: bool) -> String {
    serde_json::json!({
        "type": "signalling",
        "message": {"type": "trackStatus", "receiver_index": receiver_index, "enabled": enabled}
    })
    .to_string()
}

/// `samples` of a sine at `hz`, starting at sample `start`, amplitude ~0.3 FS.
pub fn tone(hz: f32, start: u64, samples: usize, rate: u32) -> Vec<i16> {
    let w = 2.0 * std::f64::consts::PI * hz as f64 / rate as f64;
    (0..samples as u64)
        .map(|i| ((w * (start + i) as f64).sin() * 0.3 * 32767.0) as i16)
        .collect()
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The client thread.

struct Worker {
    rtc: Rtc,
    socket: UdpSocket,
    local_addr: SocketAddr,
    wake_addr: SocketAddr,
    /// The ICE-TCP stream (write side), its local and its remote address.
    tcp: Option<(TcpStream, SocketAddr, SocketAddr)>,
    /// Frames the reader thread received on it.
    tcp_rx: Option<Receiver<Vec<u8>>>,
    opts: ClientOptions,
    events: Sender<ClientEvent>,
    stats: Arc<Stats>,
    loss_bits: Arc<AtomicU32>,
    lcg: u64,
    /// The first offer, as sent (mids renamed), kept for its SSRCs.
    offer_text: Option<String>,
    /// The first answer has been applied.
    negotiated: bool,
    /// A re-offer waiting for its answer.
    pending: Option<SdpPendingOffer>,
    cid: Option<ChannelId>,
    channel_open: bool,
    out_queue: VecDeque<String>,
    next_ping: Option<Instant>,
    ice_disconnected: bool,
    dead_reported: bool,
    /// Re-offers made, for the `o=` session version.
    reoffers: u64,
}

impl Worker {
    fn emit(&self, ev: ClientEvent) {
        let _ = self.events.send(ev);
    }

    fn run(&mut self, cmds: Receiver<Cmd>) {
        let mut buf = vec![0u8; 2048];
        let mut timeout = self.drain();
        loop {
            // Application commands: one mutation each, each followed by a drain.
            while let Ok(cmd) = cmds.try_recv() {
                if let Cmd::Close { graceful } = cmd {
                    self.shutdown(graceful, &mut buf);
                    return;
                }
                self.handle_cmd(cmd);
                timeout = self.drain();
            }

            let now = Instant::now();
            if let Some(t) = self.next_ping {
                if now >= t && self.channel_open {
                    // Keep a 1 s cadence; after a stall, restart it from now.
                    let late = now.saturating_duration_since(t) >= PING_INTERVAL;
                    self.next_ping = Some(if late { now } else { t } + PING_INTERVAL);
                    let text = format!("ping: {}", unix_ms());
                    self.write_text(&text);
                    timeout = self.drain();
                }
            }

            if !self.rtc.is_alive() && !self.dead_reported {
                self.dead_reported = true;
                self.emit(ClientEvent::Disconnected);
            }

            if !self.out_queue.is_empty() && self.channel_open {
                self.flush_out_queue();
                timeout = self.drain();
            }
            let mut wake_at = timeout;
            if let Some(p) = self.next_ping {
                wake_at = wake_at.min(p);
            }
            if !self.out_queue.is_empty() {
                // Retry soon: the channel's buffer drains as SCTP sends.
                wake_at = wake_at.min(Instant::now() + Duration::from_millis(5));
            }
            let wait = wake_at
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), MAX_WAIT);
            let _ = self.socket.set_read_timeout(Some(wait));

            match self.socket.recv_from(&mut buf) {
                Ok((n, source)) => {
                    if source != self.wake_addr && self.rtc.is_alive() {
                        if let Ok(contents) = (&buf[..n]).try_into() {
                            let input = Input::Receive(
                                Instant::now(),
                                Receive {
                                    proto: Protocol::Udp,
                                    source,
                                    destination: self.local_addr,
                                    contents,
                                },
                            );
                            if let Err(e) = self.rtc.handle_input(input) {
                                tracing::warn!("str0m client: handle_input: {e}");
                            }
                            timeout = self.drain();
                        }
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => tracing::debug!("str0m client: recv_from: {e}"),
            }
            if self.take_tcp_frames() {
                timeout = self.drain();
            }

            let now = Instant::now();
            if now >= timeout && self.rtc.is_alive() {
                if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                    tracing::warn!("str0m client: timeout: {e}");
                }
                timeout = self.drain();
            }
        }
    }

    /// Polls str0m until it returns its next timeout.
    fn drain(&mut self) -> Instant {
        loop {
            if !self.rtc.is_alive() {
                return Instant::now() + MAX_WAIT;
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return t,
                Ok(Output::Transmit(t)) => self.transmit(t),
                Ok(Output::Event(e)) => self.on_event(e),
                Err(e) => {
                    tracing::warn!("str0m client: poll_output: {e}");
                    self.rtc.disconnect();
                }
            }
        }
    }

    fn transmit(&mut self, t: Transmit) {
        if is_rtp_media(&t.contents) {
            let pct = f32::from_bits(self.loss_bits.load(Ordering::Relaxed));
            if pct > 0.0 {
                self.lcg = self
                    .lcg
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = (self.lcg >> 11) as f64 / (1u64 << 53) as f64;
                if r * 100.0 < pct as f64 {
                    inc(&self.stats.packets_dropped);
                    return;
                }
            }
            inc(&self.stats.packets_sent);
        }
        if t.proto == Protocol::Tcp {
            if let Some((stream, _, _)) = self.tcp.as_mut() {
                let mut frame = (t.contents.len() as u16).to_be_bytes().to_vec();
                frame.extend_from_slice(&t.contents);
                if let Err(e) = stream.write_all(&frame) {
                    tracing::debug!("str0m client: TCP write: {e}");
                }
            }
            return;
        }
        if let Err(e) = self.socket.send_to(&t.contents, t.destination) {
            tracing::debug!("str0m client: send_to {}: {e}", t.destination);
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => self.emit(ClientEvent::Connected),
            Event::IceConnectionStateChange(s) => {
                self.emit(ClientEvent::IceState(format!("{s:?}").to_lowercase()));
                if s == IceConnectionState::Disconnected {
                    if !self.ice_disconnected {
                        self.ice_disconnected = true;
                        self.emit(ClientEvent::Disconnected);
                    }
                } else {
                    self.ice_disconnected = false;
                }
            }
            Event::ChannelOpen(cid, label) => {
                if self.cid.is_some() && self.cid != Some(cid) {
                    // A channel opened by the server: report it, but keep ours.
                    self.emit(ClientEvent::ChannelOpen(label));
                    return;
                }
                self.cid = Some(cid);
                self.channel_open = true;
                self.emit(ClientEvent::ChannelOpen(label));
                if self.opts.track_status {
                    self.write_text(&track_status_json(0, true));
                }
                self.flush_out_queue();
                if self.opts.pings {
                    self.next_ping = Some(Instant::now() + PING_INTERVAL);
                }
            }
            Event::ChannelData(d) => {
                inc(&self.stats.messages_received);
                self.emit(ClientEvent::Message(
                    String::from_utf8_lossy(&d.data).into_owned(),
                ));
            }
            Event::ChannelClose(cid) if Some(cid) == self.cid => {
                self.channel_open = false;
                self.next_ping = None;
                self.emit(ClientEvent::ChannelClosed);
            }
            Event::MediaData(d) => {
                if d.params.spec().codec.is_audio() {
                    inc(&self.stats.audio_packets_received);
                    self.emit(ClientEvent::AudioPacket {
                        seq: **d.seq_range.start(),
                        rtp_time: d.time.numer(),
                        len: d.data.len(),
                        payload: d.data.to_vec(),
                    });
                } else {
                    inc(&self.stats.video_packets_received);
                    self.emit(ClientEvent::VideoPacket {
                        mid: d.mid.to_string(),
                        len: d.data.len(),
                    });
                }
            }
            _ => {}
        }
    }

    /// Writes on our channel if open, else queues (mutation; caller drains).
    /// Writes `text`, or queues it (in order) until the channel is open and its buffer
    /// has room, as a browser's `send` does.
    fn write_text(&mut self, text: &str) {
        self.out_queue.push_back(text.to_string());
        self.flush_out_queue();
    }

    /// Writes queued messages while the channel takes them; the rest wait for the next
    /// round of the loop.
    fn flush_out_queue(&mut self) {
        let Some(cid) = self.cid.filter(|_| self.channel_open) else {
            return;
        };
        while let Some(m) = self.out_queue.front() {
            let Some(mut ch) = self.rtc.channel(cid) else {
                return;
            };
            match ch.write(false, m.as_bytes()) {
                Ok(true) => inc(&self.stats.messages_sent),
                Ok(false) => return, // buffer full: retried from the loop
                Err(e) => tracing::warn!("str0m client: channel write: {e}"),
            }
            self.out_queue.pop_front();
        }
    }

    fn handle_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Offer(reply) => {
                let r = self.make_offer();
                let _ = reply.send(r);
            }
            Cmd::Answer(sdp, reply) => {
                let r = self.accept_answer(&sdp);
                let _ = reply.send(r);
            }
            Cmd::Renegotiate(reply) => {
                let r = self.make_reoffer();
                let _ = reply.send(r);
            }
            Cmd::Candidate(c) => {
                let c = c.trim();
                let c = c.strip_prefix("a=").unwrap_or(c);
                if c.is_empty() {
                    return; // end-of-candidates
                }
                match Candidate::from_sdp_string(c) {
                    Ok(cand) => {
                        self.rtc.add_remote_candidate(cand);
                        // Let ICE use it at once instead of at the next timeout.
                        self.drain();
                        let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                    }
                    Err(e) => tracing::warn!("str0m client: bad candidate {c:?}: {e}"),
                }
            }
            Cmd::Text(t) => self.write_text(&t),
            Cmd::Opus(payload, rtp_time) => self.write_opus(payload, rtp_time),
            Cmd::Close { .. } => unreachable!(),
        }
    }

    fn write_opus(&mut self, payload: Vec<u8>, rtp_time: u64) {
        let Some(mid) = self.first_audio_mid() else {
            tracing::debug!("str0m client: no audio m-line to send on");
            return;
        };
        let Some(writer) = self.rtc.writer(mid) else {
            tracing::debug!("str0m client: audio m-line not sending");
            return;
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
        else {
            tracing::warn!("str0m client: Opus not negotiated");
            return;
        };
        let t = MediaTime::new(rtp_time, Frequency::FORTY_EIGHT_KHZ);
        match writer.write(pt, Instant::now(), t, payload) {
            Ok(()) => inc(&self.stats.opus_written),
            Err(e) => tracing::warn!("str0m client: write opus: {e}"),
        }
    }

    fn first_audio_mid(&self) -> Option<Mid> {
        let mid = Mid::from("0");
        match self.rtc.media(mid) {
            Some(m) if m.kind() == MediaKind::Audio => Some(mid),
            _ => None,
        }
    }

    fn make_offer(&mut self) -> Result<String, String> {
        if self.offer_text.is_some() {
            return Err("offer() may be called once; use renegotiate()".into());
        }
        let mut api = self.rtc.sdp_api();
        if self.opts.audio {
            api.add_media(
                MediaKind::Audio,
                Direction::SendRecv,
                Some("client".into()),
                None,
                None,
            );
        }
        if self.opts.video {
            api.add_media(
                MediaKind::Video,
                Direction::SendRecv,
                Some("client".into()),
                None,
                None,
            );
        }
        if self.opts.screen {
            api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some("screen".into()),
                None,
                None,
            );
        }
        api.add_channel(self.opts.label.clone());
        let (offer, _pending) = api.apply().ok_or("str0m produced no offer")?;
        // `_pending` is dropped: the answer is applied as a mirrored offer.
        let text = rename_mids(&offer.to_sdp_string());
        self.offer_text = Some(text.clone());
        Ok(text)
    }

    fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        if let Some(pending) = self.pending.take() {
            let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("bad answer: {e}"))?;
            return self
                .rtc
                .sdp_api()
                .accept_answer(pending, answer)
                .map_err(|e| format!("accept_answer: {e}"));
        }
        if self.negotiated {
            return Err("no offer outstanding".into());
        }
        let Some(offer_text) = self.offer_text.clone() else {
            return Err("accept_answer before offer".into());
        };
        let mirrored = SdpOffer::from_sdp_string(sdp).map_err(|e| format!("bad answer: {e}"))?;

        // DTLS role from the answer: it says passive → we are the DTLS client.
        // Starting DTLS first also keeps str0m's ICE role as set by our offer
        // (controlling): accept_offer only picks an ICE role while DTLS is not inited.
        let active = setup_of(sdp).as_deref() != Some("active");
        self.rtc
            .direct_api()
            .start_dtls(active)
            .map_err(|e| format!("start_dtls: {e}"))?;
        self.drain();

        self.rtc
            .sdp_api()
            .accept_offer(mirrored)
            .map_err(|e| format!("applying answer: {e}"))?;
        self.drain();

        // Use the send SSRCs our offer announced.
        for (mid, ssrc, rtx) in offer_ssrcs(&offer_text) {
            let mid = Mid::from(mid.as_str());
            let current = self
                .rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .map(|s| s.ssrc());
            if current.is_some_and(|c| c != ssrc) {
                self.rtc.direct_api().reset_stream_tx(mid, None, ssrc, rtx);
                self.drain();
            }
        }

        // The application m-line exists now, so this needs no negotiation.
        let mut api = self.rtc.sdp_api();
        let cid = api.add_channel(self.opts.label.clone());
        if api.apply().is_some() {
            return Err("str0m wanted to negotiate the data channel again".into());
        }
        self.cid = Some(cid);
        self.negotiated = true;
        Ok(())
    }

    fn make_reoffer(&mut self) -> Result<String, String> {
        if !self.negotiated {
            return Err("renegotiate before the first answer".into());
        }
        // Prefer video mid "1" (we never send video), else the first m-line.
        let mid = ["1", "0", "2"]
            .iter()
            .map(|m| Mid::from(*m))
            .find(|m| self.rtc.media(*m).is_some())
            .ok_or("no media to renegotiate")?;
        let cur = self.rtc.media(mid).map(|m| m.direction()).unwrap();
        let tmp = if cur == Direction::SendRecv {
            Direction::RecvOnly
        } else {
            Direction::SendRecv
        };
        let mut api = self.rtc.sdp_api();
        api.set_direction(mid, tmp);
        api.set_direction(mid, cur);
        let (offer, pending) = api.apply().ok_or("str0m produced no re-offer")?;
        self.pending = Some(pending);
        self.reoffers += 1;
        Ok(bump_origin_version(
            &offer.to_sdp_string(),
            2 + self.reoffers,
        ))
    }

    fn shutdown(&mut self, graceful: bool, buf: &mut [u8]) {
        if graceful && self.channel_open && self.rtc.is_alive() {
            if let Some(cid) = self.cid {
                self.rtc.direct_api().close_data_channel(cid);
                let mut timeout = self.drain();
                let end = Instant::now() + CLOSE_GRACE;
                // Stop early once str0m reports the channel closed (reset done).
                while self.channel_open && Instant::now() < end && self.rtc.is_alive() {
                    let wait = timeout
                        .min(end)
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1));
                    let _ = self.socket.set_read_timeout(Some(wait));
                    if let Ok((n, source)) = self.socket.recv_from(buf) {
                        if source != self.wake_addr {
                            if let Ok(contents) = (&buf[..n]).try_into() {
                                let _ = self.rtc.handle_input(Input::Receive(
                                    Instant::now(),
                                    Receive {
                                        proto: Protocol::Udp,
                                        source,
                                        destination: self.local_addr,
                                        contents,
                                    },
                                ));
                                timeout = self.drain();
                            }
                        }
                    }
                    if self.take_tcp_frames() {
                        timeout = self.drain();
                    }
                    let now = Instant::now();
                    if now >= timeout {
                        let _ = self.rtc.handle_input(Input::Timeout(now));
                        timeout = self.drain();
                    }
                }
            }
        }
        self.rtc.disconnect();
        if let Some((stream, _, _)) = &self.tcp {
            // Also ends the reader thread's clone.
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Feeds the frames the TCP reader received; whether there were any.
    fn take_tcp_frames(&mut self) -> bool {
        let (Some(rx), Some((_, local, remote))) = (&self.tcp_rx, &self.tcp) else {
            return false;
        };
        let (local, remote) = (*local, *remote);
        let frames: Vec<Vec<u8>> = rx.try_iter().collect();
        for f in &frames {
            if !self.rtc.is_alive() {
                break;
            }
            if let Ok(contents) = f.as_slice().try_into() {
                let input = Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Tcp,
                        source: remote,
                        destination: local,
                        contents,
                    },
                );
                if let Err(e) = self.rtc.handle_input(input) {
                    tracing::warn!("str0m client: handle_input (TCP): {e}");
                }
            }
        }
        !frames.is_empty()
    }
}

/// RTP (not RTCP) by RFC 7983 / RFC 5761 demux: first byte 128..=191 and the
/// payload type outside the RTCP range 64..=95.
fn is_rtp_media(p: &[u8]) -> bool {
    p.len() >= 12 && (128..=191).contains(&p[0]) && !(64..=95).contains(&(p[1] & 0x7f))
}

/// Renames the mids of `sdp` to "0", "1", ... by m-line position (the `a=mid`
/// lines and the `a=group:BUNDLE` line).
fn rename_mids(sdp: &str) -> String {
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let lines: Vec<&str> = sdp.lines().collect();
    let mut map: Vec<(String, String)> = vec![];
    let mut idx: i64 = -1;
    for l in &lines {
        if l.starts_with("m=") {
            idx += 1;
        } else if let Some(m) = l.strip_prefix("a=mid:") {
            map.push((m.trim().to_string(), idx.to_string()));
        }
    }
    let rename = |m: &str| {
        map.iter()
            .find(|(old, _)| old == m)
            .map(|(_, new)| new.clone())
            .unwrap_or_else(|| m.to_string())
    };
    let mut out = String::with_capacity(sdp.len());
    for l in lines {
        if let Some(m) = l.strip_prefix("a=mid:") {
            out.push_str("a=mid:");
            out.push_str(&rename(m.trim()));
        } else if let Some(rest) = l.strip_prefix("a=group:BUNDLE") {
            out.push_str("a=group:BUNDLE");
            for m in rest.split_whitespace() {
                out.push(' ');
                out.push_str(&rename(m));
            }
        } else {
            out.push_str(l);
        }
        out.push_str(eol);
    }
    out
}

/// str0m writes the same `o=` session version (2) in every offer; browsers
/// increment it on each new offer, so do that.
fn bump_origin_version(sdp: &str, version: u64) -> String {
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(sdp.len() + 4);
    for l in sdp.lines() {
        match l.strip_prefix("o=") {
            Some(rest) => {
                let mut f: Vec<&str> = rest.split(' ').collect();
                let v = version.to_string();
                if f.len() >= 3 {
                    f[2] = &v;
                }
                out.push_str("o=");
                out.push_str(&f.join(" "));
            }
            None => out.push_str(l),
        }
        out.push_str(eol);
    }
    out
}

/// The first `a=setup:` value in `sdp`.
fn setup_of(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=setup:"))
        .map(|s| s.trim().to_ascii_lowercase())
}

/// Per mid: (mid, main SSRC, RTX SSRC) as announced in our offer.
fn offer_ssrcs(sdp: &str) -> Vec<(String, Ssrc, Option<Ssrc>)> {
    let mut out = vec![];
    for section in sdp.split("\nm=").skip(1) {
        let mut mid = None;
        let mut fid = None;
        let mut first = None;
        for l in section.lines() {
            let l = l.trim();
            if let Some(m) = l.strip_prefix("a=mid:") {
                mid = Some(m.to_string());
            } else if let Some(g) = l.strip_prefix("a=ssrc-group:FID ") {
                let v: Vec<u32> = g
                    .split_whitespace()
                    .filter_map(|s| s.parse().ok())
                    .collect();
                if v.len() == 2 && fid.is_none() {
                    fid = Some((v[0], v[1]));
                }
            } else if let Some(s) = l.strip_prefix("a=ssrc:") {
                if first.is_none() {
                    first = s
                        .split_whitespace()
                        .next()
                        .and_then(|s| s.parse::<u32>().ok());
                }
            }
        }
        let Some(mid) = mid else { continue };
        if let Some((main, rtx)) = fid {
            out.push((mid, Ssrc::from(main), Some(Ssrc::from(rtx))));
        } else if let Some(main) = first {
            out.push((mid, Ssrc::from(main), None));
        }
    }
    out
}

/// Reads RFC 4571 frames from `stream` until it closes, handing each to the client thread
/// and waking it with a datagram from `waker` (which it ignores) to `wake`.
fn read_tcp_frames(mut stream: TcpStream, waker: UdpSocket, wake: SocketAddr) -> Receiver<Vec<u8>> {
    let (tx, rx) = unbounded();
    std::thread::spawn(move || loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut frame = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut frame).is_err() || tx.send(frame).is_err() {
            return;
        }
        let _ = waker.send_to(&[0u8], wake);
    });
    rx
}
