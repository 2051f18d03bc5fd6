//! Video that follows the client: a camera that changes resolution mid-stream reaches the
//! app at each new size; frames we write at a new size restart the encoder (the client
//! decodes the new size at once, so it started with a keyframe); the echo sends back
//! whatever size arrives.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use serde_json::json;
use smallwebrtc::media::video::pattern;
use smallwebrtc::{Peer, PeerConfig, VideoSource};

const T: Duration = Duration::from_secs(20);

fn cfg() -> PeerConfig {
    PeerConfig {
        video_in_enabled: true,
        video_out_enabled: true,
        ..common::peers::loopback()
    }
}

fn connect(client: &mut AiortcPeer, peer: &Peer, opts: serde_json::Value) {
    let offer = client.offer(opts);
    client.answer(&peer.handle_offer(&offer).unwrap());
    client.wait_channel_open(T);
    peer.connect().unwrap();
}

/// Reads camera frames until one of `size` shows the test pattern's marker where it
/// belongs; panics after `T`.
fn wait_size(peer: &Peer, size: (u32, u32)) {
    let end = Instant::now() + T;
    let mut seen = BTreeSet::new();
    loop {
        assert!(Instant::now() < end, "no {size:?} frame; saw {seen:?}");
        let Ok(f) = peer.read_video(VideoSource::Camera, Some(Duration::from_millis(200))) else {
            continue;
        };
        assert_eq!(f.rgb.len(), (f.width * f.height * 3) as usize);
        seen.insert((f.width, f.height));
        if (f.width, f.height) == size {
            assert!(
                pattern::find_marker(&f.rgb, f.width, f.height).is_some(),
                "a {size:?} frame without the pattern's marker"
            );
            return;
        }
    }
}

fn camera_changes_size(codec: &str) {
    let mut client = AiortcPeer::spawn();
    let peer = Peer::new(cfg(), None).unwrap();
    connect(
        &mut client,
        &peer,
        json!({"video_pattern": "swrtc", "video_codec": codec, "video_size": [640, 480]}),
    );
    for size in [(640, 480), (320, 240), (1280, 720), (480, 270)] {
        client.video_resize(size.0, size.1);
        wait_size(&peer, size);
    }
    let st = peer.video_stats();
    assert_eq!(st.in_decode_errors, [0, 0], "{st:?}");
    client.close();
}

#[test]
fn vp8_camera_resolution_changes_reach_the_app() {
    camera_changes_size("VP8");
}

#[test]
fn h264_camera_resolution_changes_reach_the_app() {
    camera_changes_size("H264");
}

/// Waits until the client decoded frames of `size` (its last decoded frame has it).
fn client_sees(client: &mut AiortcPeer, peer: &Peer, size: (u32, u32), frame: &mut u64) {
    let end = Instant::now() + T;
    let mut rgb = Vec::new();
    loop {
        for _ in 0..10 {
            pattern::draw(size.0, size.1, *frame, &mut rgb);
            peer.write_video(&rgb, size.0, size.1, 0)
                .expect("any even size is accepted");
            *frame += 1;
            std::thread::sleep(Duration::from_millis(33)); // the app's 30 fps
        }
        let st = client.video_stats();
        let got = (
            st["width"].as_u64().unwrap_or(0),
            st["height"].as_u64().unwrap_or(0),
        );
        if got == (u64::from(size.0), u64::from(size.1)) {
            return;
        }
        assert!(
            Instant::now() < end,
            "the client never decoded {size:?}: {st}"
        );
    }
}

fn written_sizes_follow(codec: &str) {
    let mut client = AiortcPeer::spawn();
    let peer = Peer::new(cfg(), None).unwrap();
    connect(&mut client, &peer, json!({"video_codec": codec}));
    let mut frame = 0;
    for size in [(640, 480), (320, 240), (1280, 720), (160, 90)] {
        client_sees(&mut client, &peer, size, &mut frame);
    }
    let st = peer.video_stats();
    assert!(st.out_frames_sent >= 20, "{st:?}");
    client.close();
}

#[test]
fn vp8_written_size_changes_restart_the_encoder() {
    written_sizes_follow("VP8");
}

#[test]
fn h264_written_size_changes_restart_the_encoder() {
    written_sizes_follow("H264");
}

/// The echo (as the echo example runs it) sends back a 320×240 camera at 320×240.
#[test]
fn the_echo_returns_whatever_size_arrives() {
    let mut client = AiortcPeer::spawn();
    let peer = Arc::new(Peer::new(cfg(), None).unwrap());
    let offer = client.offer(json!({"video_pattern": "swrtc", "video_size": [320, 240]}));
    client.answer(&peer.handle_offer(&offer).unwrap());
    smallwebrtc::signalling::echo::start(peer.clone(), "sizes", false);
    client.wait_channel_open(T);
    let end = Instant::now() + T;
    loop {
        let st = client.video_stats();
        if st["frames"].as_u64().unwrap_or(0) >= 10 {
            assert_eq!(
                (st["width"].as_u64(), st["height"].as_u64()),
                (Some(320), Some(240)),
                "{st}"
            );
            break;
        }
        assert!(Instant::now() < end, "no echoed video: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A mid-call change comes back at the new size too.
    client.video_resize(640, 360);
    let end = Instant::now() + T;
    loop {
        let st = client.video_stats();
        if (st["width"].as_u64(), st["height"].as_u64()) == (Some(640), Some(360)) {
            break;
        }
        assert!(Instant::now() < end, "the new size never came back: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    client.close();
}
