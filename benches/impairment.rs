//! Echo latency and tone integrity under an impaired uplink (a benchmark, not a test).
//!
//! The str0m Pipecat-like client and the echo bot run in separate network namespaces with
//! the user-space impairment relay of the fault suite between them (needs root and
//! iproute2). The client sends a 1 kHz tone in real time, 200 ms bursts every 500 ms with
//! digital silence between, as 20 ms Opus packets (FEC on, like browsers); the relay
//! impairs what goes to the server (random loss, or 40 ± 20 ms delay with reordering) and
//! leaves the way back clean. Per scenario, with and without Opus RED offered by the
//! client:
//!
//! * echo latency: each burst's first packet sent → the packet carrying the echoed onset
//!   received, on the client's clock; median and p95 over the run;
//! * drift: median latency of the last quarter of the bursts minus that of the first;
//! * intact tone: of the 10 frames of each burst, those that come back as the tone
//!   (RMS within ±3 dB of the sent tone, frequency within 2.5 %), relative to the lossless
//!   run without RED (the targets: ≥ 95 % at 10 % loss, ≥ 99 % with RED);
//! * the server's view: packets declared lost, recovered in time (reordered or RED), the
//!   reorder wait the receiver settled on, and the echo's output queue (median, sampled as
//!   each echoed packet arrives): what stands between the receiver and the wire.
//!
//! Every figure is the median of SWRTC_BENCH_RUNS runs (default 3) of SWRTC_IMPAIR_SECS
//! seconds each (default 60; shorter for a quick look).
//!
//!     sudo cargo bench --bench impairment
//!     SWRTC_IMPAIR_SECS=15 SWRTC_BENCH_RUNS=1 cargo bench --bench impairment
//!     SWRTC_IMPAIR_ONLY="lossless,10 %" cargo bench --bench impairment

// The test peers and the relay live with the tests; the bench reuses them.
#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::impair::{FaultNet, Impairment, CLIENT_IP, RELAY_CLIENT_IP, SERVER_IP};
use common::str0m_client::{tone, ClientEvent, ClientOptions, TestClient};
use smallwebrtc::media::audio::{OpusDecoder, OpusEncoder};
use smallwebrtc::signalling::echo;
use smallwebrtc::{Peer, PeerConfig, PeerState};

const T: Duration = Duration::from_secs(15);
/// A burst is 10 packets of tone, then 15 of silence (200 ms every 500 ms).
const BURST_PACKETS: u64 = 10;
const PERIOD_PACKETS: u64 = 25;
/// Onset: a sample at or above this after 100 ms below it (the tone peaks at 9830).
const ONSET_THRESHOLD: u16 = 1000;
/// Samples of one 20 ms frame at 48 kHz.
const FRAME: usize = 960;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &u64| n > 0)
        .unwrap_or(default)
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

fn zero_cross_hz(s: &[i16]) -> f64 {
    let crossings = s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f64 * 48_000.0 / 2.0 / s.len().max(1) as f64
}

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    up: Impairment,
}

fn scenarios() -> Vec<Scenario> {
    let loss = |name, pct| Scenario {
        name,
        up: Impairment::loss(pct),
    };
    vec![
        loss("lossless", 0.0),
        loss("5 % loss", 5.0),
        loss("10 % loss", 10.0),
        loss("20 % loss", 20.0),
        Scenario {
            name: "40±20 ms jitter, reordering",
            up: Impairment {
                delay: Duration::from_millis(40),
                jitter: Duration::from_millis(20),
                reorder: true,
                ..Impairment::default()
            },
        },
    ]
}

#[derive(Default, Clone)]
struct RunResult {
    latencies: Vec<f64>,
    drift: f64,
    intact: f64,
    lost: u64,
    recovered: u64,
    packets: u64,
    wait_ms: u64,
    jitter_ms: f64,
    /// The echo's output queue (audio waiting to be sent back), sampled per echoed packet.
    out_queue_ms: Vec<f64>,
}

/// One run: a fresh namespace trio, relay, echo peer and client.
fn run(sc: Scenario, red: bool, secs: u64, seed: u64) -> RunResult {
    let net = FaultNet::new();
    let cfg = PeerConfig {
        bind_ip: Some(SERVER_IP),
        public_ip: Some(RELAY_CLIENT_IP),
        video_in_enabled: false,
        video_out_enabled: false,
        ..echo::echo_peer_config()
    };
    let peer = FaultNet::run_in(&net.server_ns, move || {
        Arc::new(Peer::new(cfg, None).unwrap())
    });
    let port = peer.local_addrs()[0].port();
    let up = Impairment { seed, ..sc.up };
    let _relay = net.relay(
        port,
        SocketAddr::new(SERVER_IP, port),
        up,
        Impairment::default(),
    );
    let opts = ClientOptions {
        video: false,
        red,
        bind_ip: CLIENT_IP,
        ..ClientOptions::default()
    };
    let mut client = FaultNet::run_in(&net.client_ns, move || TestClient::new(opts));
    let answer = peer.handle_offer(&client.offer()).unwrap();
    assert_eq!(answer.contains("red/48000"), red, "RED negotiated as asked");
    client.accept_answer(&answer).unwrap();
    echo::start(peer.clone(), "bench", false);
    let end = Instant::now() + T;
    while peer.state() != PeerState::Connected {
        assert!(Instant::now() < end, "never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    let client = Arc::new(client);

    // The sender: real time, bursts of tone; the send time of each burst's first packet.
    let packets = secs * 50;
    let sender = {
        let client = client.clone();
        std::thread::spawn(move || {
            let mut enc = OpusEncoder::new(48_000, 1, 32_000, 5, true).unwrap();
            let mut buf = vec![0u8; 4000];
            let mut bursts = Vec::new();
            let start = Instant::now();
            for i in 0..packets {
                let pcm = if i % PERIOD_PACKETS < BURST_PACKETS {
                    tone(1000.0, i * FRAME as u64, FRAME, 48_000)
                } else {
                    vec![0; FRAME]
                };
                let n = enc.encode(&pcm, &mut buf).unwrap();
                if i % PERIOD_PACKETS == 0 {
                    bursts.push(Instant::now());
                }
                client.send_opus(buf[..n].to_vec(), i * FRAME as u64);
                let due = start + Duration::from_millis(20 * (i + 1));
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            bursts
        })
    };

    // The receiver: decode everything echoed, note each onset's packet arrival.
    let mut dec = OpusDecoder::new(48_000, 1).unwrap();
    let mut pcm = vec![0i16; 5760];
    let mut echoed: Vec<i16> = Vec::new();
    let mut onsets: Vec<(Instant, usize)> = Vec::new();
    let mut quiet_run = 0usize;
    let mut out_queue_ms = Vec::new();
    let until = Instant::now() + Duration::from_secs(secs) + Duration::from_secs(1);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(ClientEvent::AudioPacket { payload, .. }) =
            client.wait_for(left, |e| matches!(e, ClientEvent::AudioPacket { .. }))
        else {
            continue;
        };
        let t = Instant::now();
        out_queue_ms.push(peer.audio_stats().out_queued_ms as f64);
        let Ok(n) = dec.decode(&payload, &mut pcm) else {
            continue;
        };
        for (k, &x) in pcm[..n].iter().enumerate() {
            if x.unsigned_abs() >= ONSET_THRESHOLD {
                if quiet_run >= 4800 {
                    onsets.push((t, echoed.len() + k));
                }
                quiet_run = 0;
            } else {
                quiet_run += 1;
            }
        }
        echoed.extend_from_slice(&pcm[..n]);
    }
    let bursts = sender.join().unwrap();

    // Latency: each onset belongs to the latest burst sent before it (bursts are 500 ms
    // apart); intact frames are counted inside each echoed burst.
    let reference = rms(&tone(1000.0, 0, 48_000, 48_000));
    let mut latencies = Vec::new();
    let mut intact = 0usize;
    let mut used = vec![false; bursts.len()];
    for &(t, at) in &onsets {
        let Some(b) = bursts.iter().rposition(|&s| s <= t) else {
            continue;
        };
        if used[b] || t - bursts[b] > Duration::from_millis(480) {
            continue;
        }
        used[b] = true;
        latencies.push((t - bursts[b]).as_secs_f64() * 1000.0);
        for k in 0..BURST_PACKETS as usize {
            // Inset by 2 ms each side: the onset is found to within a few samples.
            let (a, z) = (at + k * FRAME + 96, at + (k + 1) * FRAME - 96);
            let Some(w) = echoed.get(a..z) else { break };
            let level = rms(w) / reference;
            if (0.7..=1.41).contains(&level) && (zero_cross_hz(w) - 1000.0).abs() <= 25.0 {
                intact += 1;
            }
        }
    }
    // The first burst may straddle connection set-up; score whole bursts sent.
    let scored = bursts.len().saturating_sub(1).max(1);
    let q = latencies.len() / 4;
    let drift = if q > 0 {
        median(&latencies[latencies.len() - q..]) - median(&latencies[..q])
    } else {
        f64::NAN
    };
    let st = peer.audio_stats();
    let _ = peer.close();
    RunResult {
        drift,
        intact: intact as f64 / (scored * BURST_PACKETS as usize) as f64,
        lost: st.in_packets_lost,
        recovered: st.in_packets_reordered,
        packets: st.in_packets_decoded + st.in_packets_lost,
        wait_ms: st.in_reorder_wait_ms,
        jitter_ms: st.in_jitter_us as f64 / 1000.0,
        latencies,
        out_queue_ms,
    }
}

fn main() {
    let secs = env_num("SWRTC_IMPAIR_SECS", 60);
    let runs = env_num("SWRTC_BENCH_RUNS", 3);
    println!("Echo under uplink impairment: {runs} run(s) of {secs} s per row, medians over runs");
    println!(
        "{:<28} {:>4} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>9} {:>6} {:>7} {:>6}",
        "uplink",
        "RED",
        "med ms",
        "p95 ms",
        "drift",
        "intact",
        "vs 0 %",
        "lost",
        "recovered",
        "wait",
        "jitter",
        "outq"
    );
    // SWRTC_IMPAIR_ONLY="lossless,10 %" keeps the rows whose name contains one of the parts.
    let only = std::env::var("SWRTC_IMPAIR_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|p| name.contains(p.trim()));
    let mut lossless_intact = f64::NAN;
    for sc in scenarios().into_iter().filter(|sc| wanted(sc.name)) {
        for red in [false, true] {
            let results: Vec<RunResult> = (0..runs)
                .map(|r| run(sc, red, secs, 0x5eed_0000_0000_0100 + r))
                .collect();
            let m =
                |f: &dyn Fn(&RunResult) -> f64| median(&results.iter().map(f).collect::<Vec<_>>());
            let med = m(&|r| median(&r.latencies));
            let p95 = m(&|r| percentile(&r.latencies, 0.95));
            let intact = m(&|r| r.intact);
            if sc.up.loss_percent == 0.0 && sc.up.jitter.is_zero() && !red {
                lossless_intact = intact;
            }
            let lost = m(&|r| r.lost as f64 / r.packets.max(1) as f64 * 100.0);
            let recovered = m(&|r| r.recovered as f64 / r.packets.max(1) as f64 * 100.0);
            println!(
                "{:<28} {:>4} {:>8.1} {:>8.1} {:>7.1} {:>6.1}% {:>6.1}% {:>5.1}% {:>8.1}% {:>4.0}ms {:>5.1}ms {:>4.0}ms",
                sc.name,
                if red { "on" } else { "off" },
                med,
                p95,
                m(&|r| r.drift),
                intact * 100.0,
                intact / lossless_intact * 100.0,
                lost,
                recovered,
                m(&|r| r.wait_ms as f64),
                m(&|r| r.jitter_ms),
                m(&|r| median(&r.out_queue_ms)),
            );
        }
    }
    println!(
        "targets at 10 % loss: median <= lossless + 20 ms, p95 <= lossless + 40 ms, \
         drift <= 10 ms, intact >= 95 % of lossless (>= 99 % with RED)"
    );
}
