//! The echo bot: the demo app and common test target. For each peer it sends
//! the caller's audio and camera back, answers each app message `m` with `{"echo": m}`,
//! and (with the RTVI helper on) answers `client-ready` with `bot-ready`. WHIP is
//! ingest-only, so a WHIP publisher's audio and camera are relayed to every WHEP viewer
//! instead (publish with OBS, watch in a browser). Uses only the public peer API, and no
//! thread of its own: frames arrive by the peer's frame callbacks on the runtime's
//! workers, messages and states by its event handler.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tracing::{debug, info};

use crate::api::Peer;
use crate::config::PeerConfig;
use crate::media::audio::AudioFrame;
use crate::media::video::{VideoFrame, VideoSource};
use crate::runtime::{PeerEvent, PeerHandler};
use crate::session::PeerState;

use super::{NewPeer, OnPeer, Protocol};

/// The most audio the echo lets queue before it drops input frames.
const LIVE_ECHO_MAX_QUEUE: Duration = Duration::from_millis(100);
/// Frames over which the echo looks for a standing queue (0.5 s).
const LIVE_ECHO_WINDOW: u32 = 25;
/// A queue that never fell below this over a window is standing delay: one frame goes.
const LIVE_ECHO_STANDING: Duration = Duration::from_millis(20);

/// Peer settings for echoing: audio in and out at 48 kHz mono, so frames go back unchanged.
pub fn echo_peer_config() -> PeerConfig {
    PeerConfig {
        audio_in_sample_rate: 48_000,
        audio_out_sample_rate: 48_000,
        audio_in_channels: 1,
        audio_out_channels: 1,
        video_in_enabled: true,
        video_out_enabled: true,
        ..PeerConfig::default()
    }
}

/// The most WHEP viewers the echo relays to at once; later ones are refused (closed).
pub const MAX_VIEWERS: usize = 32;

/// An `on_peer` callback that echoes each Pipecat peer (see [`start`]), relays WHIP
/// publishers to WHEP viewers (see [`Relay`]).
pub fn on_peer(rtvi: bool) -> OnPeer {
    let relay = Arc::new(Relay::default());
    Arc::new(move |new: NewPeer| match new.protocol {
        Protocol::Pipecat => start(new.peer, &new.pc_id, rtvi),
        Protocol::Whip => relay.publish(new.peer, &new.pc_id),
        Protocol::Whep => relay.view(new.peer, &new.pc_id),
    })
}

/// WHIP publishers' audio and camera go to every live WHEP viewer. Viewers are held
/// weakly: each one's handler keeps it alive until it closes.
#[derive(Default)]
pub struct Relay {
    viewers: Mutex<Vec<std::sync::Weak<Peer>>>,
}

impl Relay {
    /// Relays `peer`'s media to the viewers until it closes.
    pub fn publish(self: &Arc<Self>, peer: Arc<Peer>, pc_id: &str) {
        let relay = self.clone();
        attach(peer, pc_id, false, Sink::Relay(relay));
    }

    /// Adds a viewer; past [`MAX_VIEWERS`] it is closed at once.
    pub fn view(&self, peer: Arc<Peer>, pc_id: &str) {
        {
            let mut v = self.viewers.lock();
            v.retain(|w| w.upgrade().is_some_and(|p| p.state() != PeerState::Closed));
            if v.len() >= MAX_VIEWERS {
                info!("echo {pc_id}: over {MAX_VIEWERS} viewers, closed");
                let _ = peer.close();
                return;
            }
            v.push(Arc::downgrade(&peer));
        }
        attach(peer, pc_id, false, Sink::None);
    }

    fn live_viewers(&self) -> Vec<Arc<Peer>> {
        self.viewers
            .lock()
            .iter()
            .filter_map(|w| w.upgrade())
            .collect()
    }

    fn audio(&self, frame: &AudioFrame) {
        for v in self.live_viewers() {
            // A viewer that cannot keep up loses frames; the publisher never waits.
            if let Err(e) = v.try_write_audio(&frame.samples) {
                debug!("relay: audio frame not sent to a viewer: {e}");
            }
        }
    }

    fn video(&self, frame: &VideoFrame) {
        for v in self.live_viewers() {
            if let Err(e) = v.write_video(&frame.rgb, frame.width, frame.height, 0) {
                debug!("relay: video frame not sent to a viewer: {e}");
            }
        }
    }
}

/// Where a peer's received media goes.
enum Sink {
    /// Back to the same peer.
    Echo,
    /// To the relay's viewers.
    Relay(Arc<Relay>),
    /// Nowhere (viewers send none).
    None,
}

/// Echoes one peer until it closes: installs its frame callbacks and event handler, then
/// connects. The handler keeps the peer alive until its `Closed` event.
pub fn start(peer: Arc<Peer>, pc_id: &str, rtvi: bool) {
    attach(peer, pc_id, rtvi, Sink::Echo);
}

fn attach(peer: Arc<Peer>, pc_id: &str, rtvi: bool, sink: Sink) {
    match sink {
        Sink::Echo => echo_media(&peer, pc_id),
        Sink::Relay(relay) => {
            let r = relay.clone();
            let audio = peer.set_audio_callback(Some(Box::new(move |f: &AudioFrame| r.audio(f))));
            if let Err(e) = audio {
                debug!("relay {pc_id}: no audio: {e}");
            }
            let video = peer.set_video_callback(
                VideoSource::Camera,
                Some(Box::new(move |f: &VideoFrame| relay.video(f))),
            );
            if let Err(e) = video {
                debug!("relay {pc_id}: no video: {e}");
            }
        }
        Sink::None => {}
    }
    let handler = Arc::new(EchoHandler {
        peer: Mutex::new(Some(peer.clone())),
        pc_id: pc_id.to_string(),
        rtvi,
    });
    peer.set_handler(Some(handler));
    if let Err(e) = peer.connect() {
        info!("echo {pc_id}: connect failed: {e}");
    }
    // Drain what was queued before the handler (a fast client's first messages).
    while let Some(ev) = peer.poll_event(None) {
        if let PeerEvent::Message { data, binary } = ev {
            reply(&peer, pc_id, &data, binary, rtvi);
        }
    }
}

/// Installs the frame callbacks that send a peer's audio and camera back to it.
fn echo_media(peer: &Arc<Peer>, pc_id: &str) {
    let weak = Arc::downgrade(peer);
    let mut live = LiveEcho::default();
    let w = weak.clone();
    let audio = peer.set_audio_callback(Some(Box::new(move |frame: &AudioFrame| {
        if let Some(p) = w.upgrade() {
            live.echo(&p, frame);
        }
    })));
    if let Err(e) = audio {
        debug!("echo {pc_id}: no audio echo: {e}");
    }
    // The camera comes back on m-line 1 when its size is the configured one.
    let w = weak;
    let video = peer.set_video_callback(
        VideoSource::Camera,
        Some(Box::new(move |frame: &VideoFrame| {
            if let Some(p) = w.upgrade() {
                if let Err(e) = p.write_video(&frame.rgb, frame.width, frame.height, 0) {
                    debug!("echo: video frame not echoed: {e}");
                }
            }
        })),
    );
    if let Err(e) = video {
        debug!("echo {pc_id}: no video echo: {e}");
    }
}

/// The echo's events: replies to messages; on `Closed` it lets the peer go.
struct EchoHandler {
    peer: Mutex<Option<Arc<Peer>>>,
    pc_id: String,
    rtvi: bool,
}

impl PeerHandler for EchoHandler {
    fn on_event(&self, event: &PeerEvent) {
        match event {
            PeerEvent::Message { data, binary } => {
                let peer = self.peer.lock().clone();
                if let Some(p) = peer {
                    reply(&p, &self.pc_id, data, *binary, self.rtvi);
                }
            }
            PeerEvent::State(s) => {
                info!("echo {}: {s:?}", self.pc_id);
                if *s == PeerState::Closed {
                    // Dropping the last handle from inside its own callback is allowed.
                    let peer = self.peer.lock().take();
                    drop(peer);
                }
            }
            PeerEvent::TrackStatus { .. } => {}
        }
    }
}

/// A live echo's queue control. Input frames arrive with network jitter while output
/// leaves on a fixed 20 ms grid, so one late frame (or a lost one recovered together with
/// the next) leaves a whole frame standing in the queue for good. Bound it: drop input past
/// 100 ms queued, and when the queue never fell below 20 ms for half a second, drop one
/// frame: the next quiet one (a pause costs nothing to shorten), or any after another half
/// second without a pause.
#[derive(Default)]
struct LiveEcho {
    window_min: Option<Duration>,
    frames: u32,
    /// Frames waited so far for a quiet one to drop, once standing delay was found.
    trim_pending: Option<u32>,
}

/// A frame whose samples all stay under this is a pause (about -30 dBFS).
const LIVE_ECHO_QUIET: u16 = 1000;

impl LiveEcho {
    fn echo(&mut self, peer: &Peer, frame: &AudioFrame) {
        let queued = peer.audio_queued().unwrap_or_default();
        if queued > LIVE_ECHO_MAX_QUEUE {
            debug!("echo: {queued:?} queued, frame dropped");
            return;
        }
        self.window_min = Some(self.window_min.map_or(queued, |m| m.min(queued)));
        self.frames += 1;
        if self.frames >= LIVE_ECHO_WINDOW {
            let standing = self.window_min.take().unwrap_or_default();
            self.frames = 0;
            if standing >= LIVE_ECHO_STANDING && self.trim_pending.is_none() {
                self.trim_pending = Some(0);
            }
        }
        if let Some(waited) = self.trim_pending {
            let quiet = frame
                .samples
                .iter()
                .all(|s| s.unsigned_abs() < LIVE_ECHO_QUIET);
            if quiet || waited >= LIVE_ECHO_WINDOW {
                self.trim_pending = None;
                debug!("echo: standing delay, frame dropped (quiet: {quiet})");
                return;
            }
            self.trim_pending = Some(waited + 1);
        }
        if let Err(e) = peer.try_write_audio(&frame.samples) {
            debug!("echo: audio frame dropped: {e}");
        }
    }
}

/// The replies to one app message: `bot-ready` first for an RTVI `client-ready` (when
/// `rtvi` is on), then `{"echo": m}` (binary messages come back as they are).
pub(crate) fn replies(data: &[u8], binary: bool, rtvi: bool) -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    if binary {
        out.push((data.to_vec(), true));
        return out;
    }
    if rtvi {
        if let Some(ready) = crate::rtvi::reply_to(data) {
            out.push((ready.into_bytes(), false));
        }
    }
    let text = String::from_utf8_lossy(data);
    let m = serde_json::from_str::<Value>(&text).unwrap_or_else(|_| Value::String(text.into()));
    out.push((json!({ "echo": m }).to_string().into_bytes(), false));
    out
}

fn reply(peer: &Peer, pc_id: &str, data: &[u8], binary: bool, rtvi: bool) {
    for (bytes, binary) in replies(data, binary, rtvi) {
        if let Err(e) = peer.send_message(&bytes, binary) {
            debug!("echo {pc_id}: reply not sent: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_json_text_and_binary() {
        let r = replies(br#"{"a":1}"#, false, true);
        assert_eq!(r, vec![(br#"{"echo":{"a":1}}"#.to_vec(), false)]);
        let r = replies(b"hello", false, false);
        assert_eq!(r, vec![(br#"{"echo":"hello"}"#.to_vec(), false)]);
        assert_eq!(
            replies(b"\x01\x02", true, true),
            vec![(b"\x01\x02".to_vec(), true)]
        );
    }

    #[test]
    fn client_ready_gets_bot_ready_then_its_echo() {
        let m =
            br#"{"label":"rtvi-ai","type":"client-ready","id":"x1","data":{"version":"1.0.0"}}"#;
        let r = replies(m, false, true);
        assert_eq!(r.len(), 2);
        assert!(String::from_utf8_lossy(&r[0].0).contains("bot-ready"));
        assert!(String::from_utf8_lossy(&r[1].0).starts_with(r#"{"echo":"#));
        assert_eq!(replies(m, false, false).len(), 1, "RTVI off: only the echo");
    }
}
