//! Video through the library with aiortc: the client's camera (a synthetic 640×480 colour
//! bar track) is decoded to RGB by `read_video`, written back with `write_video`, and the
//! client decodes what we send. A disabled track delivers nothing; wrong sizes are errors.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use common::str0m_client::{ClientOptions, TestClient};
use serde_json::json;
use smallwebrtc::{ErrorKind, Peer, PeerConfig, VideoFrame, VideoSource};

const T: Duration = Duration::from_secs(20);

fn cfg() -> PeerConfig {
    PeerConfig {
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        video_in_enabled: true,
        video_out_enabled: true,
        ..PeerConfig::default()
    }
}

#[test]
fn camera_is_decoded_and_echoed_back_to_aiortc() {
    let mut client = AiortcPeer::spawn();
    let peer = Arc::new(Peer::new(cfg(), None).unwrap());
    let offer = client.offer(json!({"audio": true, "video": true}));
    client.answer(&peer.handle_offer(&offer).unwrap());
    client.wait_channel_open(T);
    peer.connect().unwrap();

    let frame = peer
        .read_video(VideoSource::Camera, Some(T))
        .expect("a decoded camera frame");
    assert_eq!((frame.width, frame.height), (640, 480));
    assert_eq!(frame.rgb.len(), 640 * 480 * 3);
    assert_eq!(frame.source, VideoSource::Camera);
    // Colour bars: not a flat image.
    let distinct: std::collections::HashSet<_> = frame
        .rgb
        .chunks(3)
        .step_by(997)
        .map(|p| (p[0] / 32, p[1] / 32, p[2] / 32))
        .collect();
    assert!(distinct.len() >= 4, "{distinct:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let (peer, stop) = (peer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut f = VideoFrame::new(VideoSource::Camera);
            while !stop.load(Ordering::Relaxed) {
                if peer
                    .read_video_into(
                        VideoSource::Camera,
                        &mut f,
                        Some(Duration::from_millis(100)),
                    )
                    .is_ok()
                {
                    peer.write_video(&f.rgb, f.width, f.height, 0).unwrap();
                }
            }
        })
    };
    let end = Instant::now() + T;
    loop {
        let s = client.video_stats();
        if s["frames"].as_u64().unwrap_or(0) >= 30 {
            assert_eq!(s["width"], 640);
            break;
        }
        assert!(Instant::now() < end, "client never decoded our video: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    let st = peer.video_stats();
    assert!(
        st.in_frames_decoded[0] >= 30 && st.out_frames_sent >= 30,
        "{st:?}"
    );
    assert_eq!(st.in_frames_decoded[1], 0, "no screen track");
}

#[test]
fn wrong_frame_sizes_are_rejected() {
    // A pinned size refuses every other.
    let pinned = Peer::new(
        PeerConfig {
            video_out_width: 640,
            video_out_height: 480,
            ..cfg()
        },
        None,
    )
    .unwrap();
    let ok = vec![0u8; 640 * 480 * 3];
    for (w, h, stride, len, what) in [
        (320, 240, 0, 320 * 240 * 3, "size"),
        (640, 480, 100, ok.len(), "stride"),
        (640, 480, 0, ok.len() - 1, "short"),
    ] {
        let e = pinned.write_video(&ok[..len], w, h, stride).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{what}: {e}");
    }
    pinned.write_video(&ok, 640, 480, 0).unwrap();
    // Unpinned (the default): any even size, nothing odd, empty or too large.
    let free = Peer::new(cfg(), None).unwrap();
    for (w, h) in [(640, 480), (320, 240), (1280, 720), (2, 2)] {
        let rgb = vec![0u8; (w * h * 3) as usize];
        free.write_video(&rgb, w, h, 0).unwrap();
    }
    for (w, h) in [(321, 240), (320, 239), (0, 240), (4000, 2000)] {
        let rgb = vec![0u8; (w.max(1) * h.max(1) * 3) as usize];
        let e = free.write_video(&rgb, w, h, 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{w}x{h}: {e}");
    }
    let e = Peer::new(
        PeerConfig {
            video_out_width: 641,
            video_out_height: 480,
            ..cfg()
        },
        None,
    )
    .err()
    .expect("odd width is refused");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn video_in_disabled_or_absent_is_not_an_error_for_reads() {
    let mut client = TestClient::new(ClientOptions::default());
    let peer = Peer::new(cfg(), None).unwrap();
    let offer = client.offer();
    client
        .accept_answer(&peer.handle_offer(&offer).unwrap())
        .unwrap();
    let e = peer
        .read_video(VideoSource::Screen, Some(Duration::from_millis(200)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let e = peer.read_video(VideoSource::Camera, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    let no_video = Peer::new(
        PeerConfig {
            bind_ip: Some("127.0.0.1".parse().unwrap()),
            ..PeerConfig::default()
        },
        None,
    )
    .unwrap();
    let e = no_video.read_video(VideoSource::Camera, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}
