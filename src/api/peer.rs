//! The Rust peer handle: thread-safe methods that turn into commands for the peer's I/O
//! thread, plus the app-side pull calls. Holds no protocol logic itself.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::PeerConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use crate::media::audio::{AudioFrame, PopError};
use crate::media::video::{TakeError, VideoFrame, VideoSource};
use crate::runtime::assemble::PeerCore;
use crate::runtime::audio::{AudioOut, AudioStats};
use crate::runtime::video::{VideoIn, VideoStats};
use crate::runtime::{Command, FrameCallback, PeerEvent, PeerHandler, Runtime};
use crate::session::{NetworkStats, PeerState, SessionStats};

use super::stats::{state_name, PeerReport};

/// A WebRTC peer: the server side of one client connection.
///
/// All methods take `&self` and may be called from any thread. Dropping the handle closes
/// the peer (sending `peerLeft` when a data channel is open) and frees its ports; once the
/// drop returns, no callback of this peer runs.
pub struct Peer {
    core: PeerCore,
    audio_in_rate: u32,
    audio_in_channels: u16,
}

impl Peer {
    /// Creates a peer on the process-wide runtime. Events go to `handler`, or, without
    /// one, wait for [`Peer::poll_event`].
    pub fn new(cfg: PeerConfig, handler: Option<Arc<dyn PeerHandler>>) -> Result<Peer> {
        Self::with_runtime(&Runtime::global()?, cfg, handler)
    }

    /// Creates a peer on a given runtime.
    pub fn with_runtime(
        runtime: &Runtime,
        cfg: PeerConfig,
        handler: Option<Arc<dyn PeerHandler>>,
    ) -> Result<Peer> {
        // A Pipecat client always offers audio: an offer without it is a broken client.
        let require_audio = cfg.audio_in_enabled || cfg.audio_out_enabled;
        Self::build(runtime, cfg, handler, require_audio)
    }

    /// [`Peer::with_runtime`] that takes offers without an audio m-line whatever `cfg`
    /// enables: a WHIP publisher or WHEP viewer may well be video only.
    pub(crate) fn with_runtime_any_media(
        runtime: &Runtime,
        cfg: PeerConfig,
        handler: Option<Arc<dyn PeerHandler>>,
    ) -> Result<Peer> {
        Self::build(runtime, cfg, handler, false)
    }

    fn build(
        runtime: &Runtime,
        cfg: PeerConfig,
        handler: Option<Arc<dyn PeerHandler>>,
        require_audio: bool,
    ) -> Result<Peer> {
        Ok(Peer {
            core: PeerCore::assemble(runtime, &cfg, handler, require_audio)?,
            audio_in_rate: cfg.audio_in_sample_rate,
            audio_in_channels: cfg.audio_in_channels,
        })
    }

    fn send(&self, cmd: Command) -> Result<()> {
        self.core.send(cmd)
    }

    fn call<T>(
        &self,
        make: impl FnOnce(crossbeam_channel::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        self.core.call(make)
    }

    /// Answers an SDP offer (the first, or a renegotiation) with an answer that carries our
    /// host candidates. Errors: `InvalidSdp`, `Closed`.
    pub fn handle_offer(&self, sdp: &str) -> Result<String> {
        let id = self.core.shared.id;
        let sdp = sdp.to_owned();
        self.call(|reply| Command::Offer { id, sdp, reply })
    }

    /// Adds a trickled remote candidate (`candidate:…`, with or without `a=`). An empty
    /// string means end-of-candidates. Errors: `InvalidCandidate`, `Closed`.
    pub fn add_ice_candidate(&self, candidate: &str) -> Result<()> {
        let id = self.core.shared.id;
        let candidate = candidate.to_owned();
        self.call(|reply| Command::Candidate {
            id,
            candidate,
            reply,
        })
    }

    /// The app is ready: `Connected` is delivered (now, if already connected) and held
    /// inbound messages follow in order. Counted: each connect needs its disconnect.
    pub fn connect(&self) -> Result<()> {
        let id = self.core.shared.id;
        self.call(|reply| Command::Connect { id, reply })
    }

    /// Undoes one connect; the last one sends `peerLeft`, closes and frees the ports.
    pub fn disconnect(&self) -> Result<()> {
        self.send(Command::Disconnect {
            id: self.core.shared.id,
        })
    }

    /// Closes at once, whatever the connect count (sends `peerLeft` first).
    pub fn close(&self) -> Result<()> {
        self.send(Command::Close {
            id: self.core.shared.id,
            quiet: false,
        })
    }

    /// Closes like [`Peer::close`] and waits until the goodbyes (`peerLeft`, SCTP shutdown,
    /// DTLS close_notify) are sent, at most `timeout`. An already closed peer returns at
    /// once. Errors: `Timeout` (the I/O thread did not get to it in time; the peer still
    /// closes). Any thread, but not inside one of this runtime's callbacks.
    pub fn close_and_wait(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let io = &self.core.io;
        let id = self.core.shared.id;
        io.send_within(Command::Close { id, quiet: false }, timeout)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let left = deadline.saturating_duration_since(Instant::now());
        io.send_within(Command::Barrier { reply: tx }, left)?;
        rx.recv_deadline(deadline).map_err(|_| {
            Error::new(
                ErrorKind::Timeout,
                "the I/O thread did not close the peer within the timeout",
            )
        })
    }

    /// Closes at once without sending `peerLeft`: for `restart_pc`, where the client goes
    /// on with a new peer and must not take the old one's departure as the bot leaving.
    pub fn close_quietly(&self) -> Result<()> {
        self.send(Command::Close {
            id: self.core.shared.id,
            quiet: true,
        })
    }

    /// Sends an app message (text JSON for Pipecat clients). Queued in order until the
    /// data channel opens (at most 50). Errors: `TooLarge`, `WouldBlock` (queue full),
    /// `NotConnected` (no channel 10 s after connecting), `Closed`.
    pub fn send_message(&self, data: &[u8], binary: bool) -> Result<()> {
        if data.len() > limits::MAX_MESSAGE_SIZE {
            return Err(Error::new(
                crate::error::ErrorKind::TooLarge,
                format!(
                    "message of {} bytes is over the {}-byte limit",
                    data.len(),
                    limits::MAX_MESSAGE_SIZE
                ),
            ));
        }
        let id = self.core.shared.id;
        let data = data.to_vec();
        self.call(|reply| Command::Send {
            id,
            data,
            binary,
            reply,
        })
    }

    /// The next event, for apps without a handler. `None` timeout: do not wait.
    pub fn poll_event(&self, timeout: Option<Duration>) -> Option<PeerEvent> {
        self.core.shared.poll_event(timeout)
    }

    /// The state as the app sees it.
    pub fn state(&self) -> PeerState {
        self.core.shared.state()
    }

    /// Counters of the session (datagrams, messages, drops).
    pub fn stats(&self) -> Result<SessionStats> {
        let id = self.core.shared.id;
        self.call(|reply| Command::Stats { id, reply })
    }

    /// Network stats: RTT, jitter, loss, bitrate each way, bytes, packets and the selected
    /// candidate pair. Measured once per second while connected. Errors: `Closed`.
    pub fn network_stats(&self) -> Result<NetworkStats> {
        let id = self.core.shared.id;
        let mut n = self.call(|reply| Command::NetworkStats { id, reply })?.1;
        self.add_video_target(&mut n);
        Ok(n)
    }

    fn add_video_target(&self, n: &mut NetworkStats) {
        n.video_target_bps = self
            .core
            .media
            .video
            .output
            .as_ref()
            .map(|v| v.target_bps())
            .filter(|b| *b > 0);
    }

    /// Everything the peer counts and measures, in one struct. Errors: `Closed`.
    pub fn report(&self) -> Result<PeerReport> {
        let id = self.core.shared.id;
        let (session, mut network) = self.call(|reply| Command::NetworkStats { id, reply })?;
        self.add_video_target(&mut network);
        Ok(PeerReport {
            state: state_name(self.state()),
            network,
            session,
            audio: self.audio_stats(),
            video: self.video_stats(),
            events_dropped: self.events_dropped(),
        })
    }

    /// [`Peer::report`] as JSON (an object; `null` for what is not measured yet).
    pub fn stats_json(&self) -> Result<String> {
        serde_json::to_string(&self.report()?)
            .map_err(|e| Error::internal(format!("stats do not serialise: {e}")))
    }

    /// Events dropped because the app did not keep up (poll queue or callback queue full).
    pub fn events_dropped(&self) -> u64 {
        self.core.shared.events_dropped.load(Ordering::Relaxed)
    }

    /// Whether the client's track at `receiver_index` is enabled, per its trackStatus.
    pub fn track_enabled(&self, receiver_index: usize) -> bool {
        self.core
            .shared
            .track_enabled
            .get(receiver_index)
            .is_some_and(|f| f.load(Ordering::Acquire))
    }

    /// The next 20 ms frame of the client's microphone, decoded at `audio_in_sample_rate`
    /// (`None` timeout: do not wait). A muted or absent mic is not an error: reads time out.
    /// Errors: `Timeout`, `WouldBlock`, `Closed`, `InvalidArgument` (audio in disabled).
    pub fn read_audio(&self, timeout: Option<Duration>) -> Result<AudioFrame> {
        let pipe = self
            .core
            .media
            .audio_in
            .as_ref()
            .ok_or_else(|| Error::invalid("audio in is disabled in this peer's config"))?;
        pipe.ring.pop(timeout).map_err(|e| match e {
            PopError::Timeout => {
                Error::new(ErrorKind::Timeout, "no audio frame within the timeout")
            }
            PopError::WouldBlock => Error::new(ErrorKind::WouldBlock, "no audio frame ready"),
            PopError::Closed => Error::closed(),
        })
    }

    /// Like [`Peer::read_audio`], copying into `buf` without allocating. Returns the number
    /// of samples written (all channels) and the frame's pts (samples since start).
    /// `BufferTooSmall` when `buf` cannot hold a frame (the frame stays readable).
    pub fn read_audio_into(
        &self,
        buf: &mut [i16],
        timeout: Option<Duration>,
    ) -> Result<(usize, u64)> {
        let need = self.audio_in_frame_samples();
        if buf.len() < need {
            return Err(Error::new(
                ErrorKind::BufferTooSmall,
                format!(
                    "the buffer holds {} samples; a 20 ms frame needs {need}",
                    buf.len()
                ),
            ));
        }
        let frame = self.read_audio(timeout)?;
        let n = frame.samples.len().min(buf.len());
        buf[..n].copy_from_slice(&frame.samples[..n]);
        let pts = frame.pts;
        if let Some(pipe) = &self.core.media.audio_in {
            pipe.ring.recycle(frame.samples);
        }
        Ok((n, pts))
    }

    /// Push delivery of the mic: from now on each decoded 20 ms frame is passed to `cb`
    /// instead of waiting for [`Peer::read_audio`] (`None` goes back to reading). `cb` runs
    /// on a worker thread of the runtime, frames of this peer in order, one call at a time;
    /// it is borrowed for the call only. It must not block: use
    /// [`Peer::try_write_audio`], not [`Peer::write_audio`] with a wait, and hand long work
    /// to another thread. Inside it, any other method of any peer may be called, and this
    /// very setter too (it applies at once). Called from elsewhere, the setter waits for
    /// a running call, so after it returns the old callback never runs again. Dropping the
    /// peer removes it. A panic inside `cb` is caught and drops that frame.
    /// Errors: `InvalidArgument` (audio in disabled).
    pub fn set_audio_callback(&self, cb: Option<FrameCallback<AudioFrame>>) -> Result<()> {
        let pipe = self
            .core
            .media
            .audio_in
            .as_ref()
            .ok_or_else(|| Error::invalid("audio in is disabled in this peer's config"))?;
        pipe.sink.set(cb);
        Ok(())
    }

    /// Installs, replaces or (with `None`) removes the event handler (for peers made
    /// without one, such as those the signalling server hands over). Events already
    /// queued for [`Peer::poll_event`] stay there. After removing it returns, no callback
    /// runs (unless called from inside one, which then finishes).
    pub fn set_handler(&self, handler: Option<Arc<dyn PeerHandler>>) {
        self.core.shared.set_handler(handler);
    }

    /// Samples (all channels) in one 20 ms input frame.
    pub fn audio_in_frame_samples(&self) -> usize {
        (self.audio_in_rate / 50) as usize * self.audio_in_channels as usize
    }

    /// Queues PCM (interleaved s16 at `audio_out_sample_rate`, a whole number of 10 ms)
    /// and waits until its last sample has been sent, up to `timeout` (then `Timeout`; the
    /// audio stays queued). Returns early without error if `clear_audio` drops it.
    /// Errors: `InvalidArgument` (size), `WouldBlock` (over 10 s queued), `Timeout`, `Closed`.
    pub fn write_audio(&self, pcm: &[i16], timeout: Duration) -> Result<()> {
        self.audio_out()?.write(pcm, Some(timeout))
    }

    /// Queues PCM and returns at once. Errors as [`Peer::write_audio`], without `Timeout`.
    pub fn try_write_audio(&self, pcm: &[i16]) -> Result<()> {
        self.audio_out()?.write(pcm, None)
    }

    /// Drops all queued output audio within one packet time (barge-in); blocked writers
    /// return.
    pub fn clear_audio(&self) -> Result<()> {
        self.audio_out()?.clear();
        Ok(())
    }

    /// Output audio queued and not yet sent.
    pub fn audio_queued(&self) -> Result<Duration> {
        Ok(self.audio_out()?.queued())
    }

    /// Counters of the audio path (drops, losses, concealment, queue).
    pub fn audio_stats(&self) -> AudioStats {
        let mut s = AudioStats::default();
        if let Some(p) = &self.core.media.audio_in {
            p.fill_stats(&mut s);
        }
        if let Some(p) = &self.core.media.audio_out {
            p.fill_stats(&mut s);
        }
        s
    }

    /// The newest decoded frame of the client's camera or screen, as packed RGB24, that
    /// has not been read yet; waits up to `timeout` (`None`: do not wait). Frames are
    /// latest-wins: older undelivered ones are replaced (counted in `video_stats`).
    /// A track the client disabled (trackStatus) delivers nothing.
    /// Errors: `Timeout`, `WouldBlock`, `Closed`, `InvalidArgument` (video in disabled).
    pub fn read_video(&self, source: VideoSource, timeout: Option<Duration>) -> Result<VideoFrame> {
        let mut frame = VideoFrame::new(source);
        self.read_video_into(source, &mut frame, timeout)?;
        Ok(frame)
    }

    /// Like [`Peer::read_video`], reusing `frame`'s buffer.
    pub fn read_video_into(
        &self,
        source: VideoSource,
        frame: &mut VideoFrame,
        timeout: Option<Duration>,
    ) -> Result<()> {
        self.video_in(source)?
            .slot
            .take(frame, timeout)
            .map_err(take_error)
    }

    /// The next frame decoded after this call (Pipecat's UserImageRequest): waits up to
    /// `timeout` for it. Errors as [`Peer::read_video`].
    pub fn snapshot(&self, source: VideoSource, timeout: Duration) -> Result<VideoFrame> {
        let mut frame = VideoFrame::new(source);
        self.video_in(source)?
            .slot
            .snapshot(&mut frame, Some(timeout))
            .map_err(take_error)?;
        Ok(frame)
    }

    /// Push delivery of a video source: each decoded frame is passed to `cb` instead of
    /// the latest-frame slot, so [`Peer::read_video`] and [`Peer::snapshot`] see nothing
    /// while it is installed (`None` goes back to them). Same threading rules as
    /// [`Peer::set_audio_callback`]; the frame is borrowed for the call (copy what you keep).
    /// Errors: `InvalidArgument` (video in disabled).
    pub fn set_video_callback(
        &self,
        source: VideoSource,
        cb: Option<FrameCallback<VideoFrame>>,
    ) -> Result<()> {
        self.video_in(source)?.sink.set(cb);
        Ok(())
    }

    /// Sends a packed RGB24 frame (`stride` 0: `width * 3`) of any even size, or of the
    /// configured `video_out_width` × `video_out_height` when the config pins one. A new
    /// size restarts the encoder; its first frame is a keyframe. Encoded on a worker in the
    /// negotiated codec; if the encoder is busy, the newest frame wins. Errors: `InvalidArgument` (size, stride,
    /// short buffer, video out disabled), `Closed`.
    pub fn write_video(&self, rgb: &[u8], width: u32, height: u32, stride: usize) -> Result<()> {
        if self.core.shared.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        let out = self
            .core
            .media
            .video
            .output
            .as_ref()
            .ok_or_else(|| Error::invalid("video out is disabled in this peer's config"))?;
        out.write(rgb, width, height, stride, &self.core.runtime.inner.workers)
    }

    /// Counters of the video path.
    pub fn video_stats(&self) -> VideoStats {
        self.core.media.video.stats()
    }

    fn video_in(&self, source: VideoSource) -> Result<&Arc<VideoIn>> {
        self.core.media.video.input[source.index()]
            .as_ref()
            .ok_or_else(|| Error::invalid("video in is disabled in this peer's config"))
    }

    fn audio_out(&self) -> Result<&Arc<AudioOut>> {
        self.core
            .media
            .audio_out
            .as_ref()
            .ok_or_else(|| Error::invalid("audio out is disabled in this peer's config"))
    }

    /// The local UDP addresses this peer listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.core.shared.local_addrs
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.core.detach_and_close();
    }
}

impl Peer {
    /// What dropping the handle does, for a handle let go while others may still hold the
    /// peer (see [`PeerCore::detach_and_close`]): once it returns, no callback of this peer
    /// runs.
    pub(crate) fn detach_and_close(&self) {
        self.core.detach_and_close();
    }

    /// Whether any callback (event handler or frame callback) is installed.
    #[cfg(test)]
    pub(crate) fn has_callbacks(&self) -> bool {
        self.core.has_callbacks()
    }
}

fn take_error(e: TakeError) -> Error {
    match e {
        TakeError::Timeout => Error::new(ErrorKind::Timeout, "no video frame within the timeout"),
        TakeError::WouldBlock => Error::new(ErrorKind::WouldBlock, "no new video frame"),
        TakeError::Closed => Error::closed(),
    }
}
