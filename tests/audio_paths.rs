//! The audio path against the str0m Pipecat-like client over real UDP: 5 % packet loss
//! still yields continuous audio, wrong write sizes are rejected, `clear_audio` stops
//! output within two packets (40 ms of media), and blocking writes wait for their audio.

mod common;

use std::time::{Duration, Instant};

use common::peers::{open_str0m, wait_connected};
use common::str0m_client::{tone, ClientEvent, ClientOptions, TestClient};
use smallwebrtc::media::audio::OpusEncoder;
use smallwebrtc::{ErrorKind, Peer, PeerConfig, PeerEvent, PeerState};

const T: Duration = Duration::from_secs(15);

fn connect(opts: ClientOptions, cfg: PeerConfig) -> (TestClient, Peer) {
    let mut client = TestClient::new(opts);
    let peer = Peer::new(
        PeerConfig {
            bind_ip: Some("127.0.0.1".parse().unwrap()),
            ..cfg
        },
        None,
    )
    .unwrap();
    open_str0m(&mut client, &peer, T);
    wait_connected(&peer, T);
    (client, peer)
}

fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

#[test]
fn five_percent_loss_still_gives_continuous_audio() {
    let (client, peer) = connect(
        ClientOptions {
            loss_percent: 5.0,
            ..ClientOptions::default()
        },
        PeerConfig::default(),
    );
    let mut enc = OpusEncoder::new(48_000, 1, 32_000, 5, true).unwrap();
    let packets = 500u64;
    let reader = {
        std::thread::spawn(move || {
            let mut frames = Vec::new();
            let mut idle_since = Instant::now();
            loop {
                match peer.read_audio(Some(Duration::from_millis(50))) {
                    Ok(f) => {
                        frames.push((f.pts, rms(&f.samples), f.samples.len()));
                        idle_since = Instant::now();
                    }
                    Err(e) if e.kind() == ErrorKind::Timeout => {
                        if !frames.is_empty() && idle_since.elapsed() > Duration::from_millis(1500)
                        {
                            return (frames, peer);
                        }
                        assert!(idle_since.elapsed() < T, "no audio at all");
                    }
                    Err(e) => panic!("read_audio: {e}"),
                }
            }
        })
    };
    let mut out = vec![0u8; 4000];
    let start = Instant::now();
    for i in 0..packets {
        let pcm = tone(1000.0, i * 960, 960, 48_000);
        let n = enc.encode(&pcm, &mut out).unwrap();
        client.send_opus(out[..n].to_vec(), i * 960);
        // Twice real time: pacing the sender, not waiting for a result.
        let due = start + Duration::from_millis(10 * (i + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let (frames, peer) = reader.join().unwrap();
    let dropped = client.stats().packets_dropped;
    let st = peer.audio_stats();
    eprintln!(
        "sent {packets}, dropped by loss {dropped}, frames {}, {st:?}",
        frames.len()
    );
    assert!(dropped >= 10, "loss was injected: {dropped}");
    let n = frames.len() as f64;
    assert!(
        (n - packets as f64).abs() <= packets as f64 * 0.01,
        "frame count {n} not within 1 % of {packets}"
    );
    for w in frames.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 320, "pts is continuous (no gaps)");
    }
    assert!(
        frames.iter().all(|f| f.2 == 320),
        "every frame is 20 ms at 16 kHz"
    );
    // Concealment fades a pure tone for a frame or two per loss; never a long silence.
    let quiet = frames.iter().skip(5).filter(|f| f.1 < 300.0).count();
    assert!(
        quiet as u64 <= 2 * dropped + 2,
        "{quiet} quiet frames for {dropped} losses"
    );
    assert!(st.in_frames_concealed + st.in_frames_fec >= dropped.saturating_sub(2));
}

#[test]
fn wrong_write_sizes_are_rejected() {
    let peer = Peer::new(
        PeerConfig {
            bind_ip: Some("127.0.0.1".parse().unwrap()),
            ..PeerConfig::default()
        },
        None,
    )
    .unwrap();
    for n in [1usize, 239, 241, 360, 2401] {
        let e = peer.try_write_audio(&vec![0; n]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{n}");
        assert!(e.message().contains("240"), "{n}: {e}");
    }
    peer.try_write_audio(&[0; 240]).unwrap();
    peer.try_write_audio(&[0; 4800]).unwrap();
    let e = peer.try_write_audio(&vec![0; 24_000 * 11]).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TooLarge),
        "{e}"
    );
}

fn loud(e: &ClientEvent) -> bool {
    // Opus at 32 kbit/s: a tone packet is ~80 bytes, silence a handful.
    matches!(e, ClientEvent::AudioPacket { len, .. } if *len > 40)
}

#[test]
fn clear_audio_stops_output_within_two_packets() {
    let (client, peer) = connect(ClientOptions::default(), PeerConfig::default());
    let pcm = tone(440.0, 0, 24_000 * 5, 24_000);
    peer.try_write_audio(&pcm).unwrap();
    for _ in 0..10 {
        assert!(
            client.wait_for(T, loud).is_some(),
            "tone reaches the client"
        );
    }
    peer.clear_audio().unwrap();
    assert_eq!(peer.audio_queued().unwrap(), Duration::ZERO);
    // Whatever is still in flight arrives within a few hundred ms on loopback.
    let mut loud_after = 0;
    let end = Instant::now() + Duration::from_millis(500);
    while let Some(ev) = client.wait_for(end.saturating_duration_since(Instant::now()), |e| {
        matches!(e, ClientEvent::AudioPacket { .. })
    }) {
        if loud(&ev) {
            loud_after += 1;
        }
    }
    assert!(
        loud_after <= 2,
        "{loud_after} tone packets after clear_audio"
    );
    // Output goes on (auto-silence) and new audio plays.
    peer.try_write_audio(&pcm[..4800]).unwrap();
    assert!(client.wait_for(T, loud).is_some());
}

#[test]
fn blocking_write_returns_once_its_audio_is_sent() {
    let (client, peer) = connect(ClientOptions::default(), PeerConfig::default());
    let pcm = tone(440.0, 0, 24_000, 24_000); // 1 s
    let start = Instant::now();
    peer.write_audio(&pcm, Duration::from_secs(10)).unwrap();
    let took = start.elapsed();
    // Real-time pacing: one second of audio takes about a second to leave.
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(client.stats().audio_packets_received >= 40);
    // A timeout that is too short reports Timeout and keeps the audio queued.
    let e = peer
        .write_audio(&pcm, Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(peer.audio_queued().unwrap() > Duration::from_millis(500));
    let _ = peer.poll_event(None::<Duration>);
    drop(client);
    let ev = peer.poll_event(Some(Duration::from_millis(10)));
    assert!(!matches!(ev, Some(PeerEvent::State(PeerState::Failed))));
}
