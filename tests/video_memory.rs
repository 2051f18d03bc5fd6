//! An app that reads no video for 60 s while aiortc sends 640×480 at 30 fps keeps memory
//! flat: each source holds only its latest decoded frame, and the replaced ones are
//! counted. Its own test binary, so no other test's allocations move the RSS.

mod common;

use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use serde_json::json;
use smallwebrtc::{Peer, PeerConfig};

const T: Duration = Duration::from_secs(20);
/// Media time to warm up allocations (decoder, buffers, str0m's receive state).
const WARM_UP_FRAMES: u64 = 300;
/// 60 s at 30 fps.
const UNREAD_FRAMES: u64 = 1800;
/// Allowed RSS growth after the warm-up.
const MAX_GROWTH_KIB: u64 = 4 * 1024;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// Waits until `n` more camera frames have been decoded (30 fps: n / 30 s), sampling the
/// RSS; returns the largest sample.
fn decode_frames(peer: &Peer, n: u64) -> u64 {
    let start = peer.video_stats().in_frames_decoded[0];
    // Twice real time, and at least 20 s, before calling it stalled.
    let end = Instant::now() + T + Duration::from_secs(n / 15);
    let mut max_rss = 0;
    loop {
        max_rss = max_rss.max(rss_kib());
        let st = peer.video_stats();
        if st.in_frames_decoded[0] >= start + n {
            return max_rss;
        }
        assert!(Instant::now() < end, "video stalled: {st:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn sixty_seconds_of_unread_video_keeps_memory_flat() {
    let mut client = AiortcPeer::spawn();
    let peer = Peer::new(
        PeerConfig {
            bind_ip: Some("127.0.0.1".parse().unwrap()),
            video_in_enabled: true,
            ..PeerConfig::default()
        },
        None,
    )
    .unwrap();
    let offer =
        client.offer(json!({"video_pattern": "swrtc", "video_size": [640, 480], "video_fps": 30}));
    client.answer(&peer.handle_offer(&offer).unwrap());
    client.wait_channel_open(T);
    peer.connect().unwrap();

    decode_frames(&peer, WARM_UP_FRAMES);
    let before = rss_kib();
    let st0 = peer.video_stats();
    let max_rss = decode_frames(&peer, UNREAD_FRAMES);
    let after = rss_kib();
    let st = peer.video_stats();
    let sent = client.video_sent();
    eprintln!(
        "rss {before} KiB -> {after} KiB (max {max_rss}); sent {sent}; {st0:?} -> {st:?}; {:?}",
        peer.stats().unwrap()
    );
    assert!(
        max_rss <= before + MAX_GROWTH_KIB,
        "RSS grew from {before} KiB to {max_rss} KiB with nobody reading video"
    );
    let overwritten = st.in_frames_overwritten[0] - st0.in_frames_overwritten[0];
    assert!(overwritten >= UNREAD_FRAMES - 1, "{st0:?} -> {st:?}");
    assert_eq!(st.in_decode_errors, [0, 0], "{st:?}");
}
