//! Video in with real aiortc peers over UDP on 127.0.0.1: aiortc sends the library's test
//! pattern (colour bars with a moving marker, `media::video::pattern`) in VP8 and in
//! H.264 (its offer munged down to one codec), and `read_video` returns 640×480 frames
//! whose pixels match the pattern; the screen-share track arrives separately.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::aiortc::{self, match_pattern, mean_colour, video_codecs, AiortcPeer};
use serde_json::json;
use smallwebrtc::media::video::pattern;
use smallwebrtc::{Peer, PeerConfig, VideoFrame, VideoSource};

const T: Duration = Duration::from_secs(20);
/// Largest mean absolute error per channel between a decoded frame and the pattern.
const MAX_MAE: f64 = 12.0;

fn cfg() -> PeerConfig {
    PeerConfig {
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        video_in_enabled: true,
        ..PeerConfig::default()
    }
}

/// Connects `client` (already configured by `opts`) to a new peer; returns the peer and
/// the answer SDP.
fn connect(client: &mut AiortcPeer, opts: serde_json::Value) -> (Peer, String, String) {
    let peer = Peer::new(cfg(), None).unwrap();
    let offer = client.offer(opts);
    let answer = peer.handle_offer(&offer).unwrap();
    client.answer(&answer);
    client.wait_channel_open(T);
    peer.connect().unwrap();
    (peer, offer, answer)
}

/// Reads `n` camera frames (each within the deadline) and checks each against the pattern.
/// Returns the distinct marker positions seen and the worst error.
fn check_pattern_frames(peer: &Peer, source: VideoSource, n: usize) -> (BTreeSet<u32>, f64) {
    let mut frame = VideoFrame::new(source);
    let mut xs = BTreeSet::new();
    let mut worst: f64 = 0.0;
    let end = Instant::now() + T;
    for i in 0..n {
        let left = end.saturating_duration_since(Instant::now());
        peer.read_video_into(source, &mut frame, Some(left))
            .unwrap_or_else(|e| panic!("frame {i} of {n}: {e}; {:?}", peer.video_stats()));
        assert_eq!((frame.width, frame.height), (640, 480), "frame {i}");
        assert_eq!(frame.rgb.len(), 640 * 480 * 3);
        assert_eq!(frame.source, source);
        let m = match_pattern(&frame.rgb, frame.width, frame.height)
            .unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert!(
            m.mae.iter().all(|&e| e < MAX_MAE) && m.band_mae.iter().all(|&e| e < MAX_MAE),
            "frame {i} differs from pattern frame {}: {m:?}",
            m.frame
        );
        worst = worst.max(m.worst());
        xs.insert(m.marker.0);
    }
    (xs, worst)
}

fn pattern_arrives_in(codec: &str) {
    let mut client = AiortcPeer::spawn();
    let (peer, offer, answer) = connect(
        &mut client,
        json!({"video_pattern": "swrtc", "video_codec": codec, "audio": true}),
    );
    // The offer was munged down to the one codec (plus RTX), and we answered with it.
    let offered = video_codecs(&offer);
    assert!(
        offered[0].iter().all(|c| c == codec || c == "rtx"),
        "offer's video codecs: {offered:?}"
    );
    let answered = video_codecs(&answer);
    assert_eq!(
        answered[0].first().map(String::as_str),
        Some(codec),
        "{answered:?}"
    );
    assert!(
        answered[0].iter().all(|c| c == codec || c == "rtx"),
        "{answered:?}"
    );
    // aiortc sends its camera in that codec.
    let sent = client.sender_codecs();
    assert_eq!(
        sent[1].first().map(String::as_str),
        Some(&*format!("video/{codec}")),
        "{sent:?}"
    );

    let (xs, worst) = check_pattern_frames(&peer, VideoSource::Camera, 30);
    eprintln!("{codec}: marker x positions {xs:?}, worst mean abs error {worst:.2}");
    assert!(xs.len() >= 5, "the marker does not move: {xs:?}");
    let st = peer.video_stats();
    assert!(st.in_frames_decoded[0] >= 30, "{st:?}");
    assert_eq!(st.in_frames_decoded[1], 0, "no screen track: {st:?}");
    assert_eq!(st.in_decode_errors, [0, 0], "{st:?}");
}

#[test]
fn vp8_pattern_is_decoded_to_matching_rgb() {
    pattern_arrives_in("VP8");
}

#[test]
fn h264_pattern_is_decoded_to_matching_rgb() {
    pattern_arrives_in("H264");
}

#[test]
fn screen_share_is_delivered_separately_from_the_camera() {
    // Dark enough (R+G+B < 3 * 128) that `find_marker` sees no marker in it.
    const SCREEN: [u8; 3] = [40, 120, 200];
    let solid: Vec<u8> = SCREEN.iter().copied().cycle().take(640 * 480 * 3).collect();
    let mut client = AiortcPeer::spawn();
    let (peer, _, answer) = connect(
        &mut client,
        json!({"video_pattern": "swrtc", "screen": true, "screen_pattern": SCREEN}),
    );
    assert_eq!(video_codecs(&answer).len(), 2, "two video m-lines answered");

    // Screen frames: the solid colour, no marker, tagged Screen. aiortc's VP8 encoder
    // starts coarse on a flat picture (blue off by up to 12 for ~12 frames), so the
    // first 20 frames only need to arrive.
    let end = Instant::now() + T;
    let mut frame = VideoFrame::new(VideoSource::Screen);
    while peer.video_stats().in_frames_decoded[1] < 20 {
        let left = end.saturating_duration_since(Instant::now());
        peer.read_video_into(VideoSource::Screen, &mut frame, Some(left))
            .unwrap_or_else(|e| panic!("screen frames: {e}; {:?}", peer.video_stats()));
    }
    for i in 0..10 {
        let left = end.saturating_duration_since(Instant::now());
        peer.read_video_into(VideoSource::Screen, &mut frame, Some(left))
            .unwrap_or_else(|e| panic!("screen frame {i}: {e}; {:?}", peer.video_stats()));
        assert_eq!(frame.source, VideoSource::Screen);
        assert_eq!((frame.width, frame.height), (640, 480));
        let mae = pattern::mean_abs_error(&frame.rgb, &solid);
        assert!(
            mae.iter().all(|&e| e < MAX_MAE),
            "screen frame {i} (mean colour {:?}) differs from the solid {SCREEN:?} sent: {mae:?}",
            mean_colour(&frame.rgb)
        );
        assert_eq!(
            pattern::find_marker(&frame.rgb, 640, 480),
            None,
            "screen frame {i}"
        );
    }
    // Camera frames: the pattern, tagged Camera, read independently.
    let (xs, _) = check_pattern_frames(&peer, VideoSource::Camera, 10);
    assert!(xs.len() >= 2, "{xs:?}");
    let st = peer.video_stats();
    assert!(
        st.in_frames_decoded[0] >= 10 && st.in_frames_decoded[1] >= 10,
        "{st:?}"
    );
}

/// The aiortc peer's Python port of the pattern draws exactly what `pattern::draw` does.
#[test]
fn python_pattern_port_is_exact() {
    let script = aiortc::repo_root()
        .join("tests")
        .join("peers")
        .join("aiortc_peer.py");
    let cases = [
        (640u32, 480u32, 0u64),
        (640, 480, 1),
        (640, 480, 100),
        (640, 480, 579),
        (320, 240, 37),
        (96, 64, 9),
    ];
    let code = format!(
        "import importlib.util, sys\n\
         spec = importlib.util.spec_from_file_location('aiortc_peer', sys.argv[1])\n\
         m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n\
         for w, h, f in {cases:?}:\n\
         \x20   sys.stdout.buffer.write(m.swrtc_pattern_rgb(w, h, f).tobytes())\n",
        cases = cases.iter().map(|&(w, h, f)| (w, h, f)).collect::<Vec<_>>()
    );
    let out = Command::new(aiortc::python_path())
        .arg("-c")
        .arg(code)
        .arg(&script)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut at = 0;
    let mut expected = Vec::new();
    for (w, h, f) in cases {
        pattern::draw(w, h, f, &mut expected);
        let got = &out.stdout[at..at + expected.len()];
        assert!(got == &expected[..], "{w}x{h} frame {f} differs");
        at += expected.len();
    }
    assert_eq!(at, out.stdout.len());
}
