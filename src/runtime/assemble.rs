//! Peer assembly: binds a peer's sockets, builds its session and media pipes, wires the
//! hooks the I/O thread runs for it and hands it to an I/O thread. Also the one home of
//! the deletion rule ([`PeerCore::detach_and_close`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use str0m::bwe::Bitrate;
use str0m::RtcConfig;

use super::audio::{AudioIn, AudioOut};
use super::bitrate::{EstimateCell, AUDIO_RESERVE_BPS, START_VIDEO_BPS};
use super::command::{Command, IoHandle, MediaSinks, NewPeer};
use super::io_loop::MAX_SOCKETS_PER_PEER;
use super::shared::{PeerHandler, PeerShared};
use super::video::{VideoIn, VideoOut, VideoPipes};
use super::Runtime;
use crate::config::PeerConfig;
use crate::error::Result;
use crate::io;
use crate::media::video::VideoSource;
use crate::session::{Session, SessionConfig, VideoPacket};

/// The media pipes of one peer; each is absent when the peer's config disables it.
#[derive(Clone)]
pub(crate) struct PeerMedia {
    pub audio_in: Option<Arc<AudioIn>>,
    pub audio_out: Option<Arc<AudioOut>>,
    pub video: VideoPipes,
}

impl PeerMedia {
    /// The peer is closed: readers and blocked writers return `Closed` from now on.
    fn close(&self) {
        if let Some(a) = &self.audio_in {
            a.ring.close();
        }
        if let Some(a) = &self.audio_out {
            a.close();
        }
        self.video.close();
    }
}

/// One peer as the runtime built it: what its app-side handle holds.
pub(crate) struct PeerCore {
    pub shared: Arc<PeerShared>,
    pub media: PeerMedia,
    /// The peer's I/O thread.
    pub io: IoHandle,
    /// Keeps the runtime's threads alive while the peer is.
    pub runtime: Runtime,
}

impl PeerCore {
    /// Builds a peer on `runtime` and hands it to one of its I/O threads. With
    /// `require_audio`, an offer without an audio m-line is refused.
    pub fn assemble(
        runtime: &Runtime,
        cfg: &PeerConfig,
        handler: Option<Arc<dyn PeerHandler>>,
        require_audio: bool,
    ) -> Result<PeerCore> {
        cfg.validate()?;
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();

        let inner = &runtime.inner;
        let mut sockets = Vec::new();
        let mut candidates = Vec::new();
        let mut local_addrs = Vec::new();
        if inner.shared_udp.is_empty() {
            for ip in io::bind_addresses(cfg)
                .into_iter()
                .take(MAX_SOCKETS_PER_PEER)
            {
                let s = io::bind_in_range(ip, cfg.port_min, cfg.port_max)?;
                local_addrs.push(s.local_addr()?);
                sockets.push(s);
            }
        } else {
            // The runtime's shared socket(s): nothing to bind per peer.
            local_addrs.extend_from_slice(&inner.shared_udp);
        }
        for &local in &local_addrs {
            candidates.extend(io::candidates_for(local, cfg.public_ip)?);
        }
        if let Some(listen) = inner.tcp_addr {
            let ips = io::bind_addresses(cfg);
            candidates.extend(super::tcp::candidates(listen, &ips, cfg.public_ip)?);
        }

        let estimate = Arc::new(EstimateCell::default());
        let session = new_session(runtime, cfg, candidates, &estimate, require_audio, now);
        let io_handle = inner.io[inner.pick_io_index()].clone();
        let media = new_media(cfg, id, &io_handle, estimate)?;
        let sinks = media_sinks(runtime, &media);
        let shared = Arc::new(PeerShared::new(id, local_addrs, handler));
        io_handle.send(Command::AddPeer(Box::new(NewPeer {
            shared: shared.clone(),
            session,
            sockets,
            sinks,
        })))?;
        if let Some(pipe) = media.audio_out.clone() {
            inner.clock.register_output(pipe);
        }
        Ok(PeerCore {
            shared,
            media,
            io: io_handle,
            runtime: runtime.clone(),
        })
    }

    /// Queues a command for the peer's I/O thread.
    pub fn send(&self, cmd: Command) -> Result<()> {
        self.io.send(cmd)
    }

    /// Sends a command and waits for the I/O thread's reply.
    pub fn call<T>(&self, make: impl FnOnce(Sender<Result<T>>) -> Command) -> Result<T> {
        self.io.call(make)
    }

    /// The deletion rule: what letting go of a peer handle does, whoever else still holds
    /// the peer (the C `swrtc_peer_free` while the signalling server handles a request for
    /// it). Every callback is removed first (the event handler and the frame callbacks),
    /// each removal waiting for a call running on another thread, so once this returns
    /// no callback of this peer runs or will run (unless called from inside one, which
    /// then finishes normally); then the peer closes (sending `peerLeft` when a data
    /// channel is open) and frees its ports.
    pub fn detach_and_close(&self) {
        self.shared.detach_handler();
        if let Some(a) = &self.media.audio_in {
            a.sink.set(None);
        }
        for v in self.media.video.input.iter().flatten() {
            v.sink.set(None);
        }
        if !self.shared.closed.load(Ordering::Acquire) {
            let _ = self.send(Command::Close {
                id: self.shared.id,
                quiet: false,
            });
        }
    }

    /// Whether any callback (event handler or frame callback) is installed.
    #[cfg(test)]
    pub fn has_callbacks(&self) -> bool {
        self.shared.has_handler()
            || self
                .media
                .audio_in
                .as_ref()
                .is_some_and(|a| a.sink.open().is_some())
            || self
                .media
                .video
                .input
                .iter()
                .flatten()
                .any(|v| v.sink.open().is_some())
    }
}

/// The str0m instance and our session around it, with the peer's local candidates.
fn new_session(
    runtime: &Runtime,
    cfg: &PeerConfig,
    candidates: Vec<str0m::Candidate>,
    estimate: &EstimateCell,
    require_audio: bool,
    now: Instant,
) -> Session {
    let inner = &runtime.inner;
    let mut rtc_cfg = RtcConfig::new()
        .set_crypto_provider(inner.crypto.clone())
        .set_dtls_cert(inner.cert.clone())
        // Audio gaps are concealed by our decoder; str0m's hold-back adds standing delay.
        .set_reordering_size_audio(0)
        .clear_codecs()
        // RED is answered when offered: the client's redundancy recovers its lost packets.
        .enable_opus(true, true)
        .enable_vp8(true)
        .enable_h264(true)
        .set_stats_interval(Some(Duration::from_secs(1)));
    crate::session::pace_consent_checks(&mut rtc_cfg);
    // Video out follows the estimate toward the client (see `runtime::bitrate`): the
    // estimator starts where the encoder does and probes up to what the config asks for.
    let want_bps = u64::from(cfg.video_out_bitrate) + AUDIO_RESERVE_BPS;
    let start_bps = u64::from(cfg.video_out_bitrate.min(START_VIDEO_BPS)) + AUDIO_RESERVE_BPS;
    if cfg.video_out_enabled {
        rtc_cfg = rtc_cfg.enable_bwe(Some(Bitrate::bps(start_bps)));
    }
    let mut rtc = rtc_cfg.build(now);
    if cfg.video_out_enabled {
        rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(want_bps));
    }
    for c in candidates {
        rtc.add_local_candidate(c);
    }
    Session::new(
        rtc,
        SessionConfig {
            connection_timeout: cfg.connection_timeout,
            deliver_before_connect: cfg.deliver_before_connect,
            require_audio,
            renegotiate_for_video: cfg.video_in_enabled,
            audio_out_red: cfg.audio_out_red,
            bandwidth_estimate: estimate.estimate_handle(),
        },
        now,
    )
}

/// The pipes the config enables, sending what they encode to the peer's I/O thread.
fn new_media(
    cfg: &PeerConfig,
    id: u64,
    io: &IoHandle,
    estimate: Arc<EstimateCell>,
) -> Result<PeerMedia> {
    let audio_in = if cfg.audio_in_enabled {
        Some(AudioIn::new(cfg)?)
    } else {
        None
    };
    let audio_out = if cfg.audio_out_enabled {
        Some(AudioOut::new(cfg, id, io.clone())?)
    } else {
        None
    };
    let mut video = VideoPipes::default();
    if cfg.video_in_enabled {
        for src in VideoSource::ALL {
            video.input[src.index()] = Some(VideoIn::new(src, id, io.clone()));
        }
    }
    if cfg.video_out_enabled {
        video.output = Some(VideoOut::new(cfg, id, io.clone(), estimate)?);
    }
    Ok(PeerMedia {
        audio_in,
        audio_out,
        video,
    })
}

/// The hooks the I/O thread runs for this peer's pipes: what the session receives goes to
/// the pipes (queued for the workers), what the session decides reaches them.
fn media_sinks(runtime: &Runtime, media: &PeerMedia) -> MediaSinks {
    let inner = &runtime.inner;
    let mut sinks = MediaSinks::default();
    if media.video.input.iter().any(Option::is_some) {
        let pipes = media.video.input.clone();
        let workers = inner.workers.clone();
        sinks.video = Some(Box::new(move |pkt: VideoPacket| {
            if let Some(Some(p)) = pipes.get(pkt.receiver_index.wrapping_sub(1)) {
                p.push(pkt, &workers);
            }
        }));
    }
    if let Some(out) = media.video.output.clone() {
        let keyframe = out.clone();
        sinks.keyframe = Some(Box::new(move || keyframe.request_keyframe()));
        sinks.codec = Some(Box::new(move |codec| out.set_codec(codec)));
    }
    if let Some(pipe) = media.audio_in.clone() {
        inner.clock.register_input(pipe.clone());
        sinks.audio = Some(Box::new(move |pkt| pipe.push(pkt)));
    }
    let pipes = media.clone();
    sinks.closed = Some(Box::new(move || pipes.close()));
    sinks
}
