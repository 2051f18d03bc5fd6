//! Settings and their defaults: what a voice bot gets with nothing set.
//! Plain data; the C mirror lives in `ffi`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::limits;

/// Settings of one peer. Start from [`PeerConfig::default`] and change what you need.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    /// Receive the client's microphone.
    pub audio_in_enabled: bool,
    /// Send audio to the client.
    pub audio_out_enabled: bool,
    /// Receive the client's camera and screen share.
    pub video_in_enabled: bool,
    /// Send video to the client.
    pub video_out_enabled: bool,
    /// Sample rate of the audio `read_audio` returns (Hz). Default 16000.
    pub audio_in_sample_rate: u32,
    /// Channels of the audio `read_audio` returns. Default 1.
    pub audio_in_channels: u16,
    /// How much decoded input audio is kept when the app does not read (ms). Default 1000.
    pub audio_in_buffer_ms: u32,
    /// Sample rate of the audio the app writes (Hz). Default 24000.
    pub audio_out_sample_rate: u32,
    /// Channels of the audio the app writes. Default 1.
    pub audio_out_channels: u16,
    /// Duration of each Opus packet sent, in 10 ms units. Default 2 (20 ms).
    pub audio_out_10ms_chunks: u32,
    /// Send silence when the app has written nothing (Pipecat's `audio_out_auto_silence`).
    pub audio_out_auto_silence: bool,
    /// Opus encoder bitrate (bit/s). Default 32000.
    pub opus_bitrate: u32,
    /// Opus encoder complexity 0..=10. Default 5, a voice-bot balance of CPU and quality.
    pub opus_complexity: u32,
    /// Opus in-band forward error correction in what we send. Default on.
    pub opus_fec: bool,
    /// Width of the video the app writes. 0 (with height 0, the default): any even size,
    /// following the frames written (a new size restarts the encoder with a keyframe).
    /// Non-zero pins the size: frames of another size are refused.
    pub video_out_width: u32,
    /// Height of the video the app writes (0: follow the frames, see `video_out_width`).
    pub video_out_height: u32,
    /// Frame rate of the video the app writes.
    pub video_out_framerate: u32,
    /// Target video bitrate (bit/s).
    pub video_out_bitrate: u32,
    /// Address to bind UDP sockets on. `None`: every non-loopback interface address
    /// (or loopback when the machine has no other). This and the port range are ignored on
    /// a runtime with one UDP port for every peer (`RuntimeConfig::udp_addr`).
    pub bind_ip: Option<IpAddr>,
    /// Lowest UDP port to bind (0 with `port_max` 0: any port).
    pub port_min: u16,
    /// Highest UDP port to bind.
    pub port_max: u16,
    /// Public address to advertise for 1:1 NAT (same port as the bound socket).
    pub public_ip: Option<IpAddr>,
    /// A peer that has not connected this long after its offer is closed.
    pub connection_timeout: Duration,
    /// Deliver inbound app messages as soon as they arrive, without waiting for `connect`.
    /// Off by default (inbound messages are held until the app is ready).
    pub deliver_before_connect: bool,
    /// Send our audio with RFC 2198 redundancy (each packet also carries the previous one)
    /// when the client offered `red/48000/2`, as Chromium does. Costs about twice the audio
    /// bitrate; the client recovers a lost packet from the next one. Default off. (RED from
    /// the client is always accepted.)
    pub audio_out_red: bool,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            audio_in_enabled: true,
            audio_out_enabled: true,
            video_in_enabled: false,
            video_out_enabled: false,
            audio_in_sample_rate: 16_000,
            audio_in_channels: 1,
            audio_in_buffer_ms: 1000,
            audio_out_sample_rate: 24_000,
            audio_out_channels: 1,
            audio_out_10ms_chunks: 2,
            audio_out_auto_silence: true,
            opus_bitrate: 32_000,
            opus_complexity: 5,
            opus_fec: true,
            video_out_width: 0,
            video_out_height: 0,
            video_out_framerate: 30,
            video_out_bitrate: 1_000_000,
            bind_ip: None,
            port_min: 0,
            port_max: 0,
            public_ip: None,
            connection_timeout: limits::CONNECTING_TIMEOUT,
            deliver_before_connect: false,
            audio_out_red: false,
        }
    }
}

/// Settings of a runtime: its threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// I/O threads; peers are spread over them. Default 1.
    pub io_threads: usize,
    /// Codec worker threads. 0: one per core.
    pub worker_threads: usize,
    /// One UDP port for every peer of this runtime: `Some(ip:port)` binds one socket there
    /// and every peer shares it (peers are told apart by their ICE ufrag, then by the
    /// client's address once its check is authenticated). An unspecified IP (`0.0.0.0`)
    /// binds one socket per interface address (as peers do, see `PeerConfig::bind_ip`), all
    /// on that port. Port 0: any free port. Peers then ignore `bind_ip`, `port_min` and
    /// `port_max`, and all live on the first I/O thread. `None` (the default): each peer
    /// binds sockets of its own.
    pub udp_addr: Option<SocketAddr>,
    /// ICE over TCP (RFC 6544, passive) for clients whose UDP is blocked: `Some(ip:port)`
    /// listens there, and every peer's answer also offers a `tcptype passive` host
    /// candidate on that port (and a server-reflexive one for `PeerConfig::public_ip`).
    /// An unspecified IP listens on every interface and offers each peer's interface
    /// addresses (see `PeerConfig::bind_ip`). Port 0: any free port. Connections are
    /// routed to peers by their first STUN check, like the shared UDP port; all peers then
    /// live on the first I/O thread. `None` (the default): UDP only. Browsers prefer UDP
    /// when both work, so turning it on costs nothing on a good network.
    pub tcp_addr: Option<SocketAddr>,
    /// STUN and TURN servers for the runtime's own sockets. From each `stun:` URL the I/O
    /// thread learns the server-reflexive (public) address of the shared UDP socket (at
    /// start, then every 30 s) or of each peer's own sockets (when the peer is created),
    /// and offers it as a `srflx` candidate: a bot behind a NAT then needs no `public_ip`.
    /// Host names are resolved once, off the I/O thread. Bad URLs fail `Runtime::new`; a
    /// dead server is logged and counted (`RuntimeStats`), never a failed offer. From each
    /// `turn:` URL over UDP (with `username` and `credential`, required) each peer's own
    /// sockets get a relay allocation, offered as a `relay` candidate (channel bindings and
    /// refreshes kept up, deleted when the peer closes); the shared UDP socket gets none.
    /// `turns:`, `stuns:` and `?transport=tcp` URLs are checked but not used by the runtime
    /// yet (the signalling server hands them to clients). Default: none.
    pub ice_servers: Vec<IceServer>,
    /// Longest a peer's first answer waits for its sockets' server-reflexive addresses and
    /// relays (only with `stun:`/`turn:` servers configured); 0..=4 s. Default 1 s. With the shared UDP
    /// socket the address is usually known before the offer comes: no wait at all.
    pub gather_timeout: Duration,
}

/// A STUN or TURN server, shaped like the browser's `RTCIceServer` (and Pipecat's
/// `IceServer`): the same type configures the runtime and what the signalling server hands
/// to clients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceServer {
    /// `stun:host[:port]` (default port 3478), `turn:host[:port][?transport=udp|tcp]` or
    /// `turns:host[:port]` (default 5349) URLs, as in the browser's `RTCIceServer`. The host
    /// is a name, an IPv4 address or a bracketed IPv6 address; a bad URL fails
    /// `Runtime::new` with an error naming it.
    pub urls: Vec<String>,
    /// TURN user name.
    pub username: Option<String>,
    /// TURN credential.
    pub credential: Option<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            io_threads: 1,
            worker_threads: 0,
            udp_addr: None,
            tcp_addr: None,
            ice_servers: Vec::new(),
            gather_timeout: limits::GATHER_TIMEOUT,
        }
    }
}

impl PeerConfig {
    /// Checks every field; the same check for Rust and C callers (the C config is
    /// converted, then checked here). Errors: `InvalidArgument` naming the field.
    pub fn validate(&self) -> Result<()> {
        if !(8000..=48000).contains(&self.audio_in_sample_rate) {
            return Err(Error::invalid(format!(
                "audio_in_sample_rate {} is outside 8000..=48000",
                self.audio_in_sample_rate
            )));
        }
        if !self.audio_in_sample_rate.is_multiple_of(50) {
            return Err(Error::invalid(format!(
                "audio_in_sample_rate {} is not a multiple of 50 Hz (20 ms frames)",
                self.audio_in_sample_rate
            )));
        }
        if !self.audio_out_sample_rate.is_multiple_of(100) {
            return Err(Error::invalid(format!(
                "audio_out_sample_rate {} is not a multiple of 100 Hz (10 ms chunks)",
                self.audio_out_sample_rate
            )));
        }
        if !(8000..=48000).contains(&self.audio_out_sample_rate) {
            return Err(Error::invalid(format!(
                "audio_out_sample_rate {} is outside 8000..=48000",
                self.audio_out_sample_rate
            )));
        }
        if !(1..=2).contains(&self.audio_in_channels) || !(1..=2).contains(&self.audio_out_channels)
        {
            return Err(Error::invalid("audio channels must be 1 or 2"));
        }
        if ![1, 2, 4, 6].contains(&self.audio_out_10ms_chunks) {
            return Err(Error::invalid(
                "audio_out_10ms_chunks must be 1, 2, 4 or 6 (Opus packets of 10, 20, 40, 60 ms)",
            ));
        }
        if self.opus_complexity > 10 {
            return Err(Error::invalid("opus_complexity must be 0..=10"));
        }
        if !(6_000..=510_000).contains(&self.opus_bitrate) {
            return Err(Error::invalid("opus_bitrate must be 6000..=510000"));
        }
        if self.port_min > self.port_max {
            return Err(Error::invalid(format!(
                "port_min {} is above port_max {}",
                self.port_min, self.port_max
            )));
        }
        if self.connection_timeout.is_zero() {
            return Err(Error::invalid("connection_timeout must be above zero"));
        }
        Ok(())
    }
}
