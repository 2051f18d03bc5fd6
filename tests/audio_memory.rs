//! An app that stops reading for 60 s of media keeps memory flat: the input ring keeps
//! 1 s and drops (and counts) the rest. Media is sent at 4× real time to keep the test short.

mod common;

use std::time::{Duration, Instant};

use common::str0m_client::{tone, ClientEvent, ClientOptions, TestClient};
use smallwebrtc::media::audio::OpusEncoder;
use smallwebrtc::{Peer, PeerConfig, PeerState};

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

#[test]
fn sixty_seconds_unread_keeps_memory_flat() {
    let mut client = TestClient::new(ClientOptions::default());
    let peer = Peer::new(
        PeerConfig {
            bind_ip: Some("127.0.0.1".parse().unwrap()),
            ..PeerConfig::default()
        },
        None,
    )
    .unwrap();
    let offer = client.offer();
    client
        .accept_answer(&peer.handle_offer(&offer).unwrap())
        .unwrap();
    assert!(client
        .wait_for(Duration::from_secs(15), |e| matches!(
            e,
            ClientEvent::ChannelOpen(_)
        ))
        .is_some());
    peer.connect().unwrap();
    let mut enc = OpusEncoder::new(48_000, 1, 32_000, 5, true).unwrap();
    let mut out = vec![0u8; 4000];
    let mut send = |from: u64, to: u64| {
        let start = Instant::now();
        for i in from..to {
            let n = enc
                .encode(&tone(1000.0, i * 960, 960, 48_000), &mut out)
                .unwrap();
            client.send_opus(out[..n].to_vec(), i * 960);
            let due = start + Duration::from_micros(5000 * (i - from + 1));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    };
    send(0, 500); // 10 s of media to warm up allocations
    let before = rss_kib();
    send(500, 3500); // 60 s more, nobody reading
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib();
    let st = peer.audio_stats();
    eprintln!("rss {before} KiB -> {after} KiB; {st:?}");
    assert!(st.in_frames_dropped >= 3000, "{st:?}");
    assert!(after < before + 4096, "memory grew {before} -> {after} KiB");
    // The newest second is still there to read.
    let f = peer.read_audio(None).unwrap();
    assert_eq!(f.samples.len(), 320);
    assert_eq!(peer.state(), PeerState::Connected);
}
