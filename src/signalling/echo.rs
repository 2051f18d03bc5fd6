//! The echo bot: the demo app and common test target (DESIGN §5). For each peer it sends
//! the caller's audio back, answers each app message `m` with `{"echo": m}`, and (with the
//! RTVI helper on) answers `client-ready` with `bot-ready`. Uses only the public peer API.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::{debug, info};

use crate::api::Peer;
use crate::config::PeerConfig;
use crate::error::ErrorKind;
use crate::media::video::{VideoFrame, VideoSource};
use crate::runtime::PeerEvent;
use crate::session::PeerState;

use super::{NewPeer, OnPeer};

/// The most audio the echo lets queue before it drops input frames.
const LIVE_ECHO_MAX_QUEUE: Duration = Duration::from_millis(100);

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

/// An `on_peer` callback that runs [`run`] for each new peer on its own thread.
pub fn on_peer(rtvi: bool) -> OnPeer {
    Arc::new(move |new: NewPeer| {
        if let Err(e) = spawn(new, rtvi) {
            tracing::warn!("echo: cannot start a thread for a peer: {e}");
        }
    })
}

/// Runs [`run`] on a new thread.
pub fn spawn(new: NewPeer, rtvi: bool) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("echo-{}", short(&new.pc_id)))
        .spawn(move || run(&new.peer, &new.pc_id, rtvi))
}

fn short(pc_id: &str) -> &str {
    pc_id
        .rsplit('-')
        .next()
        .map_or(pc_id, |h| &h[..h.len().min(8)])
}

/// Echoes one peer until it closes: connects, then loops over its audio and events.
pub fn run(peer: &Peer, pc_id: &str, rtvi: bool) {
    if let Err(e) = peer.connect() {
        info!("echo {pc_id}: connect failed: {e}");
        return;
    }
    let mut audio = true;
    let mut video = true;
    let mut frame = VideoFrame::new(VideoSource::Camera);
    loop {
        if video {
            // The camera comes back on m-line 1 when its size is the configured one.
            match peer.read_video_into(VideoSource::Camera, &mut frame, None) {
                Ok(()) => {
                    if let Err(e) = peer.write_video(&frame.rgb, frame.width, frame.height, 0) {
                        debug!("echo {pc_id}: video frame not echoed: {e}");
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::Timeout | ErrorKind::WouldBlock) => {}
                Err(e) => {
                    debug!("echo {pc_id}: no video echo: {e}");
                    video = false;
                }
            }
        }
        if audio {
            match peer.read_audio(Some(Duration::from_millis(20))) {
                // Queue and go on: blocking on the send clock would let input pile up.
                Ok(frame) => {
                    // A live echo: after a stall delivers a backlog of input at once, do
                    // not let it become a standing delay; drop what would queue past 100 ms.
                    let queued = peer.audio_queued().unwrap_or_default();
                    if queued > LIVE_ECHO_MAX_QUEUE {
                        debug!("echo {pc_id}: {queued:?} queued, frame dropped");
                    } else if let Err(e) = peer.try_write_audio(&frame.samples) {
                        debug!("echo {pc_id}: audio frame dropped: {e}");
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::Timeout | ErrorKind::WouldBlock) => {}
                Err(e) if e.kind() == ErrorKind::Closed => {}
                Err(e) => {
                    debug!("echo {pc_id}: no audio echo: {e}");
                    audio = false;
                }
            }
        }
        let wait = (!audio).then(|| Duration::from_millis(50));
        while let Some(ev) = peer.poll_event(wait) {
            match ev {
                PeerEvent::Message { data, binary } => reply(peer, pc_id, &data, binary, rtvi),
                PeerEvent::State(s) => {
                    info!("echo {pc_id}: {s:?}");
                    if s == PeerState::Closed {
                        return;
                    }
                }
                PeerEvent::TrackStatus { .. } => {}
            }
            if wait.is_some() {
                break;
            }
        }
        if peer.state() == PeerState::Closed {
            return;
        }
    }
}

/// The replies to one app message: `bot-ready` first for an RTVI `client-ready` (when
/// `rtvi` is on), then `{"echo": m}` (binary messages come back as they are).
pub fn replies(data: &[u8], binary: bool, rtvi: bool) -> Vec<(Vec<u8>, bool)> {
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
