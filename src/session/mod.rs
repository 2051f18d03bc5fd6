//! The sans-IO peer session: one str0m `Rtc` plus Pipecat's lifecycle and data-channel
//! protocol. It takes datagrams, candidates, app calls and `Instant`s, and yields transmits,
//! events and the next timeout. It never touches sockets, threads, channels or the clock, so
//! tests drive it on a virtual clock.
//!
//! Every public mutating method ends by draining `poll_output` to a timeout (str0m's rule:
//! one mutation, then a full drain), so the rule holds by construction for every caller.

mod early;
mod media;
mod netstats;
pub mod sdp;
mod state;
mod tcp_input;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::channel::ChannelId;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive, Transmit};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tracing::{debug, warn};

use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use crate::messages::{self, Inbound, Signal};
use netstats::NetStatsTracker;
pub use netstats::{CandidatePair, CandidateType, NetworkStats, TransportProtocol};
use state::Lifecycle;
pub use state::PeerState;

/// Settings the session itself needs (the rest of `PeerConfig` belongs to media and I/O).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Close a peer that has not connected this long after its first offer.
    pub connection_timeout: Duration,
    /// Deliver inbound app messages before the app calls connect.
    pub deliver_before_connect: bool,
    /// Reject offers without an audio m-line.
    pub require_audio: bool,
    /// Send a `renegotiate` request after connect when the client has video tracks.
    pub renegotiate_for_video: bool,
    /// Wrap our audio in RED when it was negotiated (received RED is always unwrapped).
    pub audio_out_red: bool,
    /// Where the bandwidth estimate (bit/s) goes for the video encoder (0: none yet).
    pub bandwidth_estimate: Arc<AtomicU64>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            connection_timeout: limits::CONNECTING_TIMEOUT,
            deliver_before_connect: false,
            require_audio: true,
            renegotiate_for_video: false,
            audio_out_red: false,
            bandwidth_estimate: Arc::default(),
        }
    }
}

/// A mic packet received from the client, for the audio-in worker.
#[derive(Debug, Clone)]
pub struct AudioPacket {
    /// Extended RTP sequence number.
    pub seq: u64,
    /// Extended RTP timestamp, 48 kHz for Opus.
    pub rtp_time: u64,
    /// The Opus payload (shared with str0m, not copied).
    pub payload: Arc<[u8]>,
    /// When the datagram carrying it was received (for the jitter and reorder wait).
    pub arrival: Instant,
}

/// What the session tells the layer above.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// The state the app should see changed.
    State(PeerState),
    /// An app message from the client.
    Message {
        /// The message bytes (UTF-8 text unless `binary`).
        data: Vec<u8>,
        /// Whether it was sent as binary.
        binary: bool,
    },
    /// The client enabled or disabled a track (0 mic, 1 camera, 2 screen).
    TrackStatus {
        /// Receiver index (the m-line position).
        receiver_index: u32,
        /// Whether it sends.
        enabled: bool,
    },
    /// A mic packet arrived.
    Audio(AudioPacket),
    /// A video frame (depacketized) arrived on the camera or screen track.
    Video(VideoPacket),
    /// The client asked for a keyframe of the video we send.
    KeyframeRequested,
}

/// A depacketized video frame from the client, for the video-in worker.
#[derive(Debug, Clone)]
pub struct VideoPacket {
    /// 1 camera, 2 screen.
    pub receiver_index: usize,
    /// The codec it is in.
    pub codec: str0m::format::Codec,
    /// RTP timestamp (90 kHz).
    pub rtp_time: u64,
    /// Whether it starts a keyframe.
    pub keyframe: bool,
    /// The frame (shared with str0m).
    pub data: Arc<[u8]>,
}

/// Counters of one session. Everything dropped anywhere is counted here.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionStats {
    /// Datagrams handed to str0m.
    pub datagrams_in: u64,
    /// Datagrams dropped before str0m: oversized, unparsable or not for this peer.
    pub datagrams_dropped: u64,
    /// Datagrams str0m rejected with an error.
    pub input_errors: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// `ping` keepalives received.
    pub pings_in: u64,
    /// App messages received from the client.
    pub messages_in: u64,
    /// App messages written to the data channel.
    pub messages_out: u64,
    /// Outbound app messages dropped (queue full, or no channel within 10 s).
    pub messages_out_dropped: u64,
    /// Inbound app messages dropped while held for connect (oldest first).
    pub messages_in_dropped: u64,
    /// Mic packets received.
    pub audio_packets_in: u64,
    /// Video frames received (all tracks, enabled or not).
    pub video_frames_in: u64,
    /// Keyframe requests (PLI) sent.
    pub keyframe_requests: u64,
    /// Datagrams (DTLS or media) that arrived before their source was accepted and were
    /// held for it (see `limits::MAX_EARLY_DATAGRAMS`).
    pub early_held: u64,
    /// Datagrams handed to str0m before their pair was accepted: held ones released, and
    /// ones from a source that had sent an authenticated STUN check.
    pub early_delivered: u64,
    /// Early datagrams dropped: over the count or byte bound, or not accepted within
    /// `limits::EARLY_DATAGRAM_TTL` (also counted in `datagrams_dropped`).
    pub early_dropped: u64,
    /// DTLS datagrams of the client's first flight held until
    /// `limits::DTLS_FIRST_FLIGHT_HOLD` after its first check (then handed to str0m; one
    /// over the early bounds is counted in `early_dropped`).
    pub first_flight_held: u64,
}

/// One peer's protocol state. See the module docs.
pub struct Session {
    rtc: Rtc,
    cfg: SessionConfig,
    life: Lifecycle,
    channel: Option<ChannelId>,
    pending_out: VecDeque<(Vec<u8>, bool)>,
    held_in: VecDeque<(Vec<u8>, bool)>,
    /// Mids by receiver index (m-line 0 audio, 1 camera, 2 screen).
    receiver_mids: [Option<Mid>; 3],
    track_enabled: [bool; 3],
    renegotiate_due: Option<Instant>,
    last_renegotiate: Option<Instant>,
    /// Per receiver: waiting for a keyframe, and when we last asked for one.
    need_keyframe: [bool; 3],
    /// Per receiver: frames were skipped while the track was disabled; drop frames until
    /// a keyframe.
    resume_at_keyframe: [bool; 3],
    last_pli: [Option<Instant>; 3],
    transmits: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    rtc_timeout: Instant,
    stats: SessionStats,
    net: NetStatsTracker,
    early: early::EarlyQueue,
    /// The client's first DTLS flight while it is held (apart from `early`, so that
    /// strangers filling that cannot crowd it out).
    flight: early::EarlyQueue,
    /// Whether str0m has been handed any DTLS (nothing more is held for the hold).
    dtls_fed: bool,
    /// When the held first DTLS flight is due for str0m.
    first_flight_due: Option<Instant>,
    /// Whether an offer was accepted (only the first one's candidates are withheld).
    offered: bool,
    /// The client's candidates, until its first check or `withheld_until`
    /// (`limits::REMOTE_CANDIDATE_WAIT`).
    withheld: Vec<String>,
    withheld_until: Option<Instant>,
}

/// Paces our ICE consent checks so a vanished client is noticed within
/// [`limits::QUIET_WINDOW`] even when it sends nothing of its own (no pings, no media):
/// a live client answers every check.
pub fn pace_consent_checks(cfg: &mut str0m::RtcConfig) {
    cfg.set_max_stun_rto(crate::limits::CONSENT_CHECK_INTERVAL);
    // More, shorter retries keep ICE's own give-up time where it was (about 20 s): a
    // client slow to answer (a busy machine) must not lose its pair, only a silent one
    // is reported, by our own liveness.
    cfg.set_max_stun_retransmits(crate::limits::CONSENT_RETRIES);
}

impl Session {
    /// A session around a configured `Rtc` that already holds its local candidates.
    pub fn new(rtc: Rtc, cfg: SessionConfig, now: Instant) -> Session {
        Session {
            rtc,
            life: Lifecycle::new(now, cfg.connection_timeout),
            cfg,
            channel: None,
            pending_out: VecDeque::new(),
            held_in: VecDeque::new(),
            receiver_mids: [None, None, None],
            track_enabled: [true; 3],
            renegotiate_due: None,
            last_renegotiate: None,
            need_keyframe: [true; 3],
            resume_at_keyframe: [false; 3],
            last_pli: [None; 3],
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rtc_timeout: now,
            stats: SessionStats::default(),
            net: NetStatsTracker::default(),
            early: early::EarlyQueue::default(),
            flight: early::EarlyQueue::default(),
            dtls_fed: false,
            first_flight_due: None,
            offered: false,
            withheld: Vec::new(),
            withheld_until: None,
        }
    }

    /// Accepts an offer (first or renegotiation) and returns the answer SDP.
    pub fn accept_offer(&mut self, sdp_text: &str, now: Instant) -> Result<String> {
        self.ensure_open()?;
        let (mut offer, lines) = sdp::parse_offer(sdp_text)?;
        let withheld = if self.offered {
            Vec::new()
        } else {
            self.offer_without_candidates(sdp_text, &mut offer)
        };
        let has_audio = lines.iter().any(|l| l.kind == sdp::LineKind::Audio);
        if self.cfg.require_audio && !has_audio {
            return Err(Error::new(
                ErrorKind::InvalidSdp,
                "the offer has no audio m-line (Pipecat clients always send one)",
            ));
        }
        // str0m asserts on some malformed offers (a payload type reused across m-lines
        // with another codec, found by fuzzing) instead of returning an error. A panic here
        // would take the whole I/O thread down with every peer on it: catch it, and close
        // this session, whose state is unknown after it.
        let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.rtc.sdp_api().accept_offer(offer)
        }));
        let answer = match accepted {
            Ok(r) => {
                r.map_err(|e| Error::new(ErrorKind::InvalidSdp, format!("offer rejected: {e}")))?
            }
            Err(_) => {
                warn!("the WebRTC stack failed on an offer; closing the session");
                // Not `close`: that would drive the same Rtc again.
                self.life.close();
                self.pending_out.clear();
                return Err(Error::new(
                    ErrorKind::InvalidSdp,
                    "offer rejected: the WebRTC stack could not apply it",
                ));
            }
        };
        // Receiver 0 is the first audio m-line, 1 and 2 the first two video ones (camera,
        // screen). For Pipecat's clients (audio first) that is their m-line positions,
        // which their trackStatus indexes follow; a WHIP/WHEP offer may have no audio.
        let mut video = lines.iter().filter(|l| l.kind == sdp::LineKind::Video);
        let audio = lines.iter().find(|l| l.kind == sdp::LineKind::Audio);
        self.receiver_mids =
            [audio, video.next(), video.next()].map(|l| l.map(|l| Mid::from(l.mid.as_str())));
        if let Some(mid) = self.receiver_mids[0] {
            // str0m wraps every packet in RED once negotiated; ours only when asked to.
            self.rtc
                .direct_api()
                .set_red_send(mid, self.cfg.audio_out_red);
        }
        self.life.offer_accepted(now);
        self.offered = true;
        if !withheld.is_empty() {
            self.withheld = withheld;
            self.withheld_until = Some(now + limits::REMOTE_CANDIDATE_WAIT);
        }
        // A (re)negotiated track starts with a keyframe request.
        self.need_keyframe = [true; 3];
        self.last_pli = [None; 3];
        if self.life.app_ready() && self.has_video_in() {
            // After a renegotiation a new keyframe arrives by itself; no new request needed.
            self.renegotiate_due = None;
        }
        self.drain(now);
        self.after_mutation(now);
        let answer = sdp::repeat_candidates(&sdp::prefer_red(&answer.to_sdp_string()));
        self.net.note_sdp_candidates(sdp_text, false);
        self.net.note_sdp_candidates(&answer, true);
        Ok(answer)
    }

    /// Adds a trickled remote candidate. An empty string (or `end-of-candidates`) ends them.
    pub fn add_remote_candidate(&mut self, candidate: &str, now: Instant) -> Result<()> {
        self.ensure_open()?;
        let text = candidate.trim();
        let text = text.strip_prefix("a=").unwrap_or(text);
        if text.is_empty() || text == "end-of-candidates" {
            return Ok(());
        }
        if text.len() > 1024 {
            return Err(Error::new(
                ErrorKind::InvalidCandidate,
                "the candidate is over 1024 bytes",
            ));
        }
        if is_mdns_candidate(text) {
            // Chromium hides private addresses behind `<uuid>.local` names; we do not resolve
            // them. The client's first check teaches us its address (peer-reflexive).
            debug!("mDNS candidate skipped (learned from the client's checks): {text}");
            return Ok(());
        }
        let parsed = Candidate::from_sdp_string(text)
            .or_else(|_| Candidate::from_sdp_string(&format!("candidate:{text}")))
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidCandidate,
                    format!("unparsable ICE candidate {text:?}: {e}"),
                )
            })?;
        self.net.note_candidate(parsed.clone(), false);
        if self.withheld_until.is_some() && self.withheld.len() < limits::MAX_WITHHELD_CANDIDATES {
            self.withheld.push(text.to_owned());
            return Ok(());
        }
        self.rtc.add_remote_candidate(parsed);
        // str0m paces checks; a timeout right away starts them now, not 50 ms later.
        self.mutate(now, |rtc| rtc.handle_input(Input::Timeout(now)));
        self.after_mutation(now);
        Ok(())
    }

    /// The input for one datagram or frame, or `None` (closed session, or a datagram str0m
    /// cannot take: counted as dropped).
    fn receive<'a>(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &'a [u8],
    ) -> Option<Input<'a>> {
        if self.life.is_closed() {
            return None;
        }
        let Ok(contents) = DatagramRecv::try_from(data) else {
            self.stats.datagrams_dropped += 1;
            return None;
        };
        Some(Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination,
                contents,
            },
        ))
    }

    /// `source` sent a binding request str0m accepted (its integrity verified): it is the
    /// client, and it has our answer, so our own checks may go now.
    fn client_checked(&mut self, source: SocketAddr, now: Instant) {
        self.early.note_check(source, now);
        self.release_candidates(now);
    }

    /// Feeds a datagram received on one of this peer's sockets. Oversized datagrams must
    /// already be dropped (see [`Session::count_dropped_datagram`]).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let Some(input) = self.receive(now, Protocol::Udp, source, destination, data) else {
            return;
        };
        let accepted = self.rtc.accepts(&input);
        if !accepted && is_stun(data) {
            // STUN that str0m refuses failed its ufrag or integrity check: not ours.
            self.stats.datagrams_dropped += 1;
            return;
        }
        if accepted && is_stun_request(data) {
            self.client_checked(source, now);
        }
        if !accepted && !self.early.is_checked(source) {
            self.hold_early(now, source, destination, data);
            return;
        }
        if let Some(due) = self.first_flight_wait(now, source, data) {
            if !accepted {
                self.stats.early_delivered += 1;
            }
            self.hold_flight(now, due, source, destination, data);
            return;
        }
        if !accepted {
            self.stats.early_delivered += 1;
        }
        self.note_fed(data);
        self.feed(now, input);
    }

    /// Hands an accepted datagram to str0m, then releases held ones it may have unlocked.
    fn feed(&mut self, now: Instant, input: Input) {
        let source = match &input {
            Input::Receive(_, r) => Some(r.source),
            Input::Timeout(_) => None,
        };
        self.stats.datagrams_in += 1;
        self.life.heard(now);
        if let Err(e) = self.rtc.handle_input(input) {
            self.stats.input_errors += 1;
            debug!("datagram from {source:?} rejected: {e}");
        }
        self.drain(now);
        if !self.life.ever_connected() {
            // Until ICE connects, poke str0m after every packet so the next check is not
            // held back by its 50 ms pacing (connect time against aiortc: 70 → 28 ms).
            self.mutate(now, |rtc| rtc.handle_input(Input::Timeout(now)));
        }
        self.release_early(now);
        self.after_mutation(now);
    }

    /// Adds a server-reflexive candidate (`public` seen by a STUN server for our socket
    /// `base`), learned after the session was made; it goes into the next answer. False
    /// when str0m refuses it (a bad address, or redundant with one it has).
    pub fn add_server_reflexive(&mut self, public: SocketAddr, base: SocketAddr) -> bool {
        match Candidate::server_reflexive(public, base, "udp") {
            Ok(c) => self.rtc.add_local_candidate(c).is_some(),
            Err(e) => {
                debug!("server-reflexive candidate {public} (base {base}) refused: {e}");
                false
            }
        }
    }

    /// Adds a relay candidate (`relayed` allocated on a TURN server reached from our socket
    /// `local`); it goes into the next answer. False when str0m refuses it.
    pub fn add_relayed(&mut self, relayed: SocketAddr, local: SocketAddr) -> bool {
        match Candidate::relayed(relayed, local, "udp") {
            Ok(c) => self.rtc.add_local_candidate(c).is_some(),
            Err(e) => {
                debug!("relay candidate {relayed} refused: {e}");
                false
            }
        }
    }

    /// Our local ICE ufrag: what a client's checks name in their USERNAME.
    /// Our local ICE ufrag: what a client's checks name in their USERNAME.
    pub fn local_ufrag(&mut self) -> String {
        self.rtc.direct_api().local_ice_credentials().ufrag
    }

    /// Gives this session fresh local ICE credentials (before its answer is made: a
    /// shared UDP socket needs every peer's ufrag to be unique).
    pub fn renew_local_credentials(&mut self) {
        self.rtc
            .direct_api()
            .set_local_ice_credentials(str0m::IceCreds::new());
    }

    /// Whether `source` has sent this session a STUN check that passed str0m's integrity
    /// check (it is this peer's client).
    pub fn has_checked(&self, source: SocketAddr) -> bool {
        self.early.is_checked(source)
    }

    /// Counts a datagram the I/O layer dropped before it reached the session.
    pub fn count_dropped_datagram(&mut self) {
        self.stats.datagrams_dropped += 1;
    }

    /// Advances time: str0m's timers and the session's own (connect timeout, ping liveness,
    /// channel give-up, renegotiation).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.life.is_closed() {
            return;
        }
        if self.withheld_until.is_some_and(|t| now >= t) {
            self.release_candidates(now);
        }
        self.mutate(now, |rtc| rtc.handle_input(Input::Timeout(now)));
        self.release_early(now);
        if let Some(due) = self.renegotiate_due {
            if now >= due {
                self.renegotiate_due = None;
                self.send_internal(messages::RENEGOTIATE, now);
            }
        }
        self.after_mutation(now);
    }

    /// The app is ready (both pipeline sides may call it): counted; delivers `Connected` and held messages.
    pub fn connect(&mut self, now: Instant) -> Result<()> {
        self.ensure_open()?;
        self.life.app_connect();
        while let Some((data, binary)) = self.held_in.pop_front() {
            self.events
                .push_back(SessionEvent::Message { data, binary });
        }
        if self.has_video_in() {
            self.request_renegotiate(now);
        }
        self.after_mutation(now);
        Ok(())
    }

    /// One side of the app is done; the last one closes the peer (sends `peerLeft` first).
    pub fn disconnect(&mut self, now: Instant) {
        if self.life.is_closed() {
            return;
        }
        if self.life.app_disconnect() {
            self.close(now);
        }
    }

    /// Closes now: `peerLeft` if a channel is open, then a graceful DTLS close.
    pub fn close(&mut self, now: Instant) {
        if self.life.is_closed() {
            return;
        }
        if self.channel.is_some() {
            self.send_internal(messages::PEER_LEFT, now);
        }
        self.close_quietly(now);
    }

    /// Closes now without `peerLeft` (graceful DTLS close only).
    pub fn close_quietly(&mut self, now: Instant) {
        if self.life.is_closed() {
            return;
        }
        self.mutate(now, |rtc| rtc.close());
        self.life.close();
        self.pending_out.clear();
        self.after_mutation(now);
    }

    /// Queues or sends an app message. Ordered; at most 50 wait for the channel to open.
    pub fn send_message(&mut self, data: &[u8], binary: bool, now: Instant) -> Result<()> {
        self.ensure_open()?;
        if data.len() > limits::MAX_MESSAGE_SIZE {
            self.stats.messages_out_dropped += 1;
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "message of {} bytes is over the {}-byte limit",
                    data.len(),
                    limits::MAX_MESSAGE_SIZE
                ),
            ));
        }
        if self.channel.is_none() && self.life.channel_wait_over(now) {
            self.stats.messages_out_dropped += 1;
            return Err(Error::new(
                ErrorKind::NotConnected,
                "no data channel opened within 10 s of connecting; message dropped",
            ));
        }
        if self.pending_out.len() >= limits::MAX_PENDING_OUTBOUND {
            self.stats.messages_out_dropped += 1;
            return Err(Error::new(
                ErrorKind::WouldBlock,
                format!(
                    "{} messages already wait for the data channel; message dropped",
                    limits::MAX_PENDING_OUTBOUND
                ),
            ));
        }
        self.pending_out.push_back((data.to_vec(), binary));
        self.after_mutation(now);
        Ok(())
    }

    /// Asks the client for a new offer (at most once per 2 s), e.g. to get a keyframe.
    pub fn request_renegotiate(&mut self, now: Instant) {
        let earliest = self
            .last_renegotiate
            .map_or(now, |t| t + limits::RENEGOTIATE_INTERVAL);
        self.renegotiate_due = Some(earliest.max(now));
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        if t.is_some() {
            self.stats.datagrams_out += 1;
        }
        t
    }

    /// The next event for the app side.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.rtc_timeout;
        for d in [
            self.life.next_deadline(),
            self.renegotiate_due,
            // A closed session never expires them (nor is it polled for long).
            self.early.next_expiry().filter(|_| !self.life.is_closed()),
            self.first_flight_due.filter(|_| !self.life.is_closed()),
            self.withheld_until.filter(|_| !self.life.is_closed()),
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(d);
        }
        t
    }

    /// Closed and drained: the I/O layer may forget it once its transmits are sent.
    pub fn is_finished(&self) -> bool {
        self.life.is_closed() && self.transmits.is_empty() && self.events.is_empty()
    }

    /// The state as the app sees it.
    pub fn state(&self) -> PeerState {
        self.life.reported()
    }

    /// Counters.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Network stats (RTT, jitter, loss, bitrate, candidate pair), updated once per second.
    pub fn network_stats(&self) -> &NetworkStats {
        self.net.stats()
    }

    fn has_video_in(&self) -> bool {
        self.cfg.renegotiate_for_video
            && self.receiver_mids[1..].iter().flatten().any(|mid| {
                self.rtc.media(*mid).is_some_and(|m| {
                    m.kind() == MediaKind::Video && m.direction() != Direction::Inactive
                })
            })
    }

    fn ensure_open(&self) -> Result<()> {
        if self.life.is_closed() {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    /// One str0m mutation followed by the full drain.
    fn mutate<T, E: std::fmt::Display>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Rtc) -> std::result::Result<T, E>,
    ) {
        if let Err(e) = f(&mut self.rtc) {
            debug!("str0m call failed: {e}");
        }
        self.drain(now);
    }

    fn send_internal(&mut self, text: &str, now: Instant) {
        if let Some(cid) = self.channel {
            if let Some(mut ch) = self.rtc.channel(cid) {
                if let Err(e) = ch.write(false, text.as_bytes()) {
                    debug!("internal message not sent: {e}");
                }
            }
            self.drain(now);
        }
        if text == messages::RENEGOTIATE {
            self.last_renegotiate = Some(now);
        }
    }

    /// Work that follows any mutation: flush queued messages, apply timers, report state.
    fn after_mutation(&mut self, now: Instant) {
        self.flush_pending(now);
        if self.channel.is_none()
            && self.life.channel_wait_over(now)
            && !self.pending_out.is_empty()
        {
            let n = self.pending_out.len() as u64;
            warn!("no data channel within 10 s of connecting: {n} queued messages dropped");
            self.stats.messages_out_dropped += n;
            self.pending_out.clear();
        }
        if self.life.update(now) == state::Verdict::Close {
            self.close(now);
            return;
        }
        while let Some(s) = self.life.take_report() {
            self.events.push_back(SessionEvent::State(s));
        }
    }

    fn flush_pending(&mut self, now: Instant) {
        let Some(cid) = self.channel else {
            return;
        };
        let mut wrote = false;
        while let Some((data, binary)) = self.pending_out.front() {
            let Some(mut ch) = self.rtc.channel(cid) else {
                break;
            };
            match ch.write(*binary, data) {
                Ok(true) => {
                    self.stats.messages_out += 1;
                    self.pending_out.pop_front();
                    wrote = true;
                }
                Ok(false) => break, // SCTP buffer full; retried after the next drain.
                Err(e) => {
                    warn!("data channel write failed, message dropped: {e}");
                    self.stats.messages_out_dropped += 1;
                    self.pending_out.pop_front();
                }
            }
        }
        if wrote {
            self.drain(now);
        }
    }

    /// Drains `poll_output` to a timeout, routing transmits and events.
    fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_timeout = t;
                    break;
                }
                Ok(Output::Transmit(t)) => self.transmits.push_back(t),
                Ok(Output::Event(e)) => self.handle_event(e, now),
                Err(e) => {
                    warn!("str0m failed, closing the peer: {e}");
                    self.life.fail();
                    self.rtc.disconnect();
                    self.rtc_timeout = now + Duration::from_secs(3600);
                    break;
                }
            }
        }
        if !self.rtc.is_alive() && !self.life.is_closed() {
            self.life.close();
        }
    }

    fn handle_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Connected => self.life.transport_connected(now),
            Event::IceConnectionStateChange(s) => {
                let up = matches!(
                    s,
                    IceConnectionState::Connected | IceConnectionState::Completed
                );
                self.life.ice_changed(up, now);
            }
            Event::ChannelOpen(cid, label) => {
                debug!("data channel {label:?} open");
                // Pipecat clients open one channel; the latest one is the one we write to.
                self.channel = Some(cid);
            }
            Event::ChannelClose(cid) if self.channel == Some(cid) => self.channel = None,
            Event::ChannelData(d) => self.handle_channel_data(&d.data, d.binary, now),
            Event::MediaData(m) if Some(m.mid) == self.receiver_mids[0] => {
                self.stats.audio_packets_in += 1;
                self.events.push_back(SessionEvent::Audio(AudioPacket {
                    seq: **m.seq_range.end(),
                    rtp_time: m.time.numer(),
                    payload: m.data,
                    arrival: now,
                }));
            }
            Event::MediaData(m) => self.handle_video(m, now),
            Event::KeyframeRequest(r) if Some(r.mid) == self.receiver_mids[1] => {
                self.events.push_back(SessionEvent::KeyframeRequested);
            }
            Event::Closed => self.life.close(),
            // Once per stats interval each: cheap enough for the I/O thread.
            Event::PeerStats(s) => self.net.on_peer(&s),
            Event::MediaIngressStats(s) => self.net.on_ingress(&s, self.receiver_mids[0]),
            Event::MediaEgressStats(s) => self.net.on_egress(&s, self.receiver_mids[0]),
            // Our transport-cc estimate or the client's REMB: the encoder reads it on its
            // next frame.
            Event::EgressBitrateEstimate(k) => {
                let bps = self.net.on_estimate(&k);
                self.cfg.bandwidth_estimate.store(bps, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn handle_channel_data(&mut self, data: &[u8], binary: bool, now: Instant) {
        match messages::classify(data, binary) {
            Inbound::Ping => {
                self.stats.pings_in += 1;
                self.life.ping(now);
            }
            Inbound::Signalling(Signal::TrackStatus {
                receiver_index,
                enabled,
            }) => {
                if let Some(slot) = self.track_enabled.get_mut(receiver_index as usize) {
                    *slot = enabled;
                }
                self.events.push_back(SessionEvent::TrackStatus {
                    receiver_index,
                    enabled,
                });
            }
            Inbound::Signalling(other) => debug!("signalling message ignored: {other:?}"),
            Inbound::App => {
                self.stats.messages_in += 1;
                if self.life.app_ready() || self.cfg.deliver_before_connect {
                    self.events.push_back(SessionEvent::Message {
                        data: data.to_vec(),
                        binary,
                    });
                } else {
                    if self.held_in.len() >= limits::MAX_HELD_INBOUND {
                        self.held_in.pop_front();
                        self.stats.messages_in_dropped += 1;
                    }
                    self.held_in.push_back((data.to_vec(), binary));
                }
            }
        }
    }
}

/// STUN starts with two zero bits (RFC 7983 demultiplexing: first byte 0..=3).
fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] < 4
}

/// A STUN binding request (type 0x0001).
fn is_stun_request(data: &[u8]) -> bool {
    is_stun(data) && data[0] == 0 && data[1] == 1
}

#[cfg(test)]
mod early_tests;
#[cfg(test)]
mod tests;

/// Whether a candidate's connection address is an mDNS name (`<uuid>.local`), which str0m
/// cannot parse: `[candidate:]foundation component transport priority address port ...`.
fn is_mdns_candidate(text: &str) -> bool {
    let text = text.strip_prefix("candidate:").unwrap_or(text);
    text.split_ascii_whitespace()
        .nth(4)
        .is_some_and(|addr| addr.to_ascii_lowercase().ends_with(".local"))
}
