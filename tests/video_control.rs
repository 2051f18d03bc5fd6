//! Control of incoming video with real aiortc peers over UDP on 127.0.0.1: a track the
//! client disables (trackStatus) delivers nothing while its packets keep arriving, and
//! delivers again once re-enabled; keyframe requests when a track starts and after a
//! renegotiation; the `renegotiate` request after connect, at most once per 2 s.

mod common;

use std::time::{Duration, Instant};

use common::aiortc::{match_pattern, AiortcPeer};
use serde_json::json;
use smallwebrtc::{ErrorKind, Peer, PeerConfig, PeerEvent, VideoFrame, VideoSource};

const T: Duration = Duration::from_secs(20);
const MAX_MAE: f64 = 12.0;
const RENEGOTIATE: &str = r#"{"type":"signalling","message":{"type":"renegotiate"}}"#;

fn cfg() -> PeerConfig {
    PeerConfig {
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        video_in_enabled: true,
        ..PeerConfig::default()
    }
}

fn track_status(receiver_index: u32, enabled: bool) -> serde_json::Value {
    json!({"type": "trackStatus", "receiver_index": receiver_index, "enabled": enabled})
}

/// Waits for the TrackStatus event (other events are skipped).
fn wait_track_status(peer: &Peer, receiver_index: u32, enabled: bool) {
    let end = Instant::now() + T;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match peer.poll_event(Some(left)) {
            Some(PeerEvent::TrackStatus {
                receiver_index: i,
                enabled: e,
            }) if i == receiver_index && e == enabled => return,
            Some(_) => {}
            None => panic!("no trackStatus {receiver_index}={enabled} within {T:?}"),
        }
        assert!(
            Instant::now() < end,
            "no trackStatus {receiver_index}={enabled}"
        );
    }
}

/// Waits until the session has received `n` more video frames (enabled or not).
fn wait_frames_in(peer: &Peer, n: u64) -> u64 {
    let start = peer.stats().unwrap().video_frames_in;
    let end = Instant::now() + T;
    loop {
        let now = peer.stats().unwrap().video_frames_in;
        if now >= start + n {
            return now;
        }
        assert!(
            Instant::now() < end,
            "only {} video frames in within {T:?}",
            now - start
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `n` camera frames, each matching the pattern.
fn read_matching(peer: &Peer, n: usize, what: &str) {
    let mut frame = VideoFrame::new(VideoSource::Camera);
    let end = Instant::now() + T;
    for i in 0..n {
        let left = end.saturating_duration_since(Instant::now());
        peer.read_video_into(VideoSource::Camera, &mut frame, Some(left))
            .unwrap_or_else(|e| panic!("{what}: frame {i}: {e}; {:?}", peer.video_stats()));
        let m = match_pattern(&frame.rgb, frame.width, frame.height)
            .unwrap_or_else(|e| panic!("{what}: frame {i}: {e}"));
        assert!(m.worst() < MAX_MAE, "{what}: frame {i}: {m:?}");
    }
}

/// Checks that the camera track delivers nothing while disabled although its frames keep
/// arriving.
fn check_nothing_delivered(peer: &Peer, what: &str) {
    // Let a second of frames arrive after the trackStatus, so nothing sent before it is
    // still on its way through the decoder; then empty the slot.
    wait_frames_in(peer, 30);
    let _ = peer.read_video(VideoSource::Camera, None);
    let decoded = peer.video_stats().in_frames_decoded[0];
    let frames_in = peer.stats().unwrap().video_frames_in;
    let e = peer
        .read_video(VideoSource::Camera, Some(Duration::from_millis(1500)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{what}: {e}");
    let st = peer.video_stats();
    assert_eq!(
        st.in_frames_decoded[0], decoded,
        "{what}: decoded while disabled: {st:?}"
    );
    let now_in = peer.stats().unwrap().video_frames_in;
    assert!(
        now_in >= frames_in + 20,
        "{what}: frames stopped arriving: {frames_in} -> {now_in}"
    );
}

fn set_track(client: &mut AiortcPeer, peer: &Peer, enabled: bool) {
    client
        .send_text(&json!({"type": "signalling", "message": track_status(1, enabled)}).to_string());
    wait_track_status(peer, 1, enabled);
    assert_eq!(peer.track_enabled(1), enabled);
}

fn disabled_track_delivers_nothing_until_reenabled(codec: &str) {
    let mut client = AiortcPeer::spawn();
    let peer = Peer::new(cfg(), None).unwrap();
    // Disabled from the start: the trackStatus is the first message on the channel.
    let offer = client.offer(json!({
        "video_pattern": "swrtc",
        "video_codec": codec,
        "track_status": track_status(1, false),
    }));
    client.answer(&peer.handle_offer(&offer).unwrap());
    client.wait_channel_open(T);
    peer.connect().unwrap();
    wait_track_status(&peer, 1, false);
    assert!(!peer.track_enabled(1));
    check_nothing_delivered(&peer, "disabled at start");

    set_track(&mut client, &peer, true);
    read_matching(&peer, 30, "enabled");

    // Disabled after frames were decoded, then re-enabled: the frames delivered after the
    // gap are right, not decoded against the reference frames from before it.
    set_track(&mut client, &peer, false);
    check_nothing_delivered(&peer, "disabled later");
    let (kf, errors) = (
        peer.stats().unwrap().keyframe_requests,
        peer.video_stats().in_decode_errors[0],
    );
    set_track(&mut client, &peer, true);
    read_matching(&peer, 30, "re-enabled");
    let (st, s) = (peer.video_stats(), peer.stats().unwrap());
    eprintln!(
        "{codec}: {st:?}; keyframe requests {kf} -> {}, decode errors {errors} -> {}",
        s.keyframe_requests, st.in_decode_errors[0]
    );
    assert!(
        s.keyframe_requests > kf,
        "no keyframe request on re-enable: {s:?}"
    );
}

#[test]
fn disabled_vp8_track_delivers_nothing_until_reenabled() {
    disabled_track_delivers_nothing_until_reenabled("VP8");
}

#[test]
fn disabled_h264_track_delivers_nothing_until_reenabled() {
    disabled_track_delivers_nothing_until_reenabled("H264");
}

#[test]
fn keyframes_are_requested_and_renegotiation_keeps_video_coming() {
    let mut client = AiortcPeer::spawn();
    let peer = Peer::new(cfg(), None).unwrap();
    let offer = client.offer(json!({"video_pattern": "swrtc"}));
    client.answer(&peer.handle_offer(&offer).unwrap());
    client.wait_channel_open(T);
    peer.connect().unwrap();

    // The library asks for a new offer after connect (it has video tracks).
    client.wait_message(T, |t| t == RENEGOTIATE);
    let first = Instant::now();
    read_matching(&peer, 10, "first frames");
    let s = peer.stats().unwrap();
    assert!(
        s.keyframe_requests >= 1,
        "no keyframe request when the track started: {s:?}"
    );

    // A second connect asks again, but not within 2 s of the first request.
    peer.connect().unwrap();
    client.wait_message(T, |t| t == RENEGOTIATE);
    let gap = first.elapsed();
    assert!(
        gap >= Duration::from_millis(1900),
        "renegotiate requests {gap:?} apart"
    );

    // Renegotiate as the client would; frames keep coming, and the new track state
    // starts with a keyframe request.
    let before = (peer.stats().unwrap(), peer.video_stats());
    let offer = client.renegotiate();
    client.answer(&peer.handle_offer(&offer).unwrap());
    let decoded = peer.video_stats().in_frames_decoded[0];
    read_matching(&peer, 30, "after renegotiation");
    let (s, st) = (peer.stats().unwrap(), peer.video_stats());
    // (One of the 30 frames read may have been decoded before `decoded` was taken.)
    assert!(st.in_frames_decoded[0] >= decoded + 29, "{st:?}");
    assert!(
        s.keyframe_requests > before.0.keyframe_requests,
        "no keyframe request after renegotiation: {:?} -> {s:?}",
        before.0
    );
    assert_eq!(
        st.in_decode_errors[0], before.1.in_decode_errors[0],
        "{st:?}"
    );

    // No third request: a renegotiation answered after connect settles it.
    let texts: Vec<_> = client
        .events_so_far()
        .into_iter()
        .filter(|e| e["event"] == "message" && e["text"] == RENEGOTIATE)
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    peer.disconnect().unwrap();
}
