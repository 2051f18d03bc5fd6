//! Audio through the library with aiortc as the client: a 1 kHz tone from the client is
//! read with `read_audio`, written back with `write_audio`, and the client hears it at the
//! same frequency (±2 %) and level (±2 dB) at app rates of 16, 24, 44.1 and 48 kHz.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::aiortc::AiortcPeer;
use serde_json::json;
use smallwebrtc::{ErrorKind, Peer, PeerConfig};

const T: Duration = Duration::from_secs(20);

fn rms_dbfs(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let rms = (sum / samples.len().max(1) as f64).sqrt();
    20.0 * (rms / 32768.0).max(1e-9).log10()
}

/// Runs an echo loop on `peer` until `stop`; returns the RMS (dBFS) of what it read.
fn echo(
    peer: Arc<Peer>,
    stop: Arc<AtomicBool>,
    level_x100: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut recent: Vec<i16> = Vec::new();
        let mut cushion: Vec<i16> = Vec::new();
        let mut primed = false;
        while !stop.load(Ordering::Relaxed) {
            match peer.read_audio(Some(Duration::from_millis(100))) {
                Ok(frame) => {
                    recent.extend_from_slice(&frame.samples);
                    let keep = frame.sample_rate as usize; // last second
                    if recent.len() > keep {
                        recent.drain(..recent.len() - keep);
                    }
                    level_x100.store(((-rms_dbfs(&recent)) * 100.0) as u64, Ordering::Relaxed);
                    // Start with 60 ms queued, as a real bot's playout would, so a late frame
                    // on a busy machine does not become a gap of silence in the echo.
                    cushion.extend_from_slice(&frame.samples);
                    if primed || cushion.len() >= frame.samples.len() * 3 {
                        primed = true;
                        match peer.try_write_audio(&cushion) {
                            Ok(()) => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            Err(e) => panic!("write_audio: {e}"),
                        }
                        cushion.clear();
                    }
                }
                Err(e) if e.kind() == ErrorKind::Timeout => {}
                Err(e) if e.kind() == ErrorKind::Closed => return,
                Err(e) => panic!("read_audio: {e}"),
            }
        }
    })
}

fn echo_at(rate: u32) {
    let mut client = AiortcPeer::spawn();
    let peer = Arc::new(
        Peer::new(
            PeerConfig {
                bind_ip: Some("127.0.0.1".parse().unwrap()),
                audio_in_sample_rate: rate,
                audio_out_sample_rate: rate,
                ..PeerConfig::default()
            },
            None,
        )
        .unwrap(),
    );
    let offer = client.offer(json!({"audio": true, "video": false, "tone_hz": 1000}));
    client.answer(&peer.handle_offer(&offer).unwrap());
    client.wait_channel_open(T);
    peer.connect().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let level = Arc::new(AtomicU64::new(0));
    let h = echo(peer.clone(), stop.clone(), level.clone());
    // Wait for two full seconds of echoed tone in the client's analysis window.
    let stats = client.wait_audio(T, |s| {
        s["frames"].as_u64().unwrap_or(0) > 150 && s["rms_dbfs"].as_f64().unwrap_or(-120.0) > -40.0
    });
    std::thread::sleep(Duration::from_millis(2100));
    let stats2 = client.audio_stats();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    let freq = stats2["freq_hz"].as_f64().unwrap();
    let echoed = stats2["rms_dbfs"].as_f64().unwrap();
    let read = -(level.load(Ordering::Relaxed) as f64) / 100.0;
    eprintln!(
        "{rate} Hz: read {read:.2} dBFS, client hears {echoed:.2} dBFS at {freq:.1} Hz ({stats})"
    );
    assert!((freq - 1000.0).abs() <= 20.0, "{rate}: frequency {freq}");
    assert!(
        (echoed - read).abs() <= 2.0,
        "{rate}: level {echoed} vs read {read}"
    );
    let s = peer.stats().unwrap();
    assert!(s.audio_packets_in > 100, "{s:?}");
}

#[test]
fn tone_echoes_at_16k() {
    echo_at(16_000);
}

#[test]
fn tone_echoes_at_24k() {
    echo_at(24_000);
}

#[test]
fn tone_echoes_at_44k1() {
    echo_at(44_100);
}

#[test]
fn tone_echoes_at_48k() {
    echo_at(48_000);
}
