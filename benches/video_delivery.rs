//! Video delivery benchmark (not a test): an aiortc peer sends the library's test pattern
//! at 640×480, 30 fps, over real UDP on 127.0.0.1 for 20 s; the app reads every frame
//! with `read_video_into`. Prints frames delivered to the app versus frames aiortc sent
//! (target ≥ 99 %) per run and the median of 3 runs, per codec, and the per-frame cost
//! of decode + convert seen in-process (CPU time of the library's worker threads, which
//! do nothing else here: audio is off, divided by the frames decoded).
//!
//!     cargo bench --bench video_delivery [-- --secs 20 --runs 3 --codecs VP8,H264]
//!
//! Needs the aiortc venv (`.ci/setup.sh --tests`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aiortc::{video_codecs, AiortcPeer};
use serde_json::json;
use smallwebrtc::{Peer, PeerConfig, VideoFrame, VideoSource};

const FPS: u64 = 30;
const T: Duration = Duration::from_secs(20);

struct Run {
    sent: u64,
    delivered: u64,
    decoded: u64,
    overwritten: u64,
    dropped: u64,
    decode_errors: u64,
    frames_in: u64,
    keyframe_requests: u64,
    worker_cpu_s: f64,
    /// Longest wait between two frames read, after the first.
    max_gap_ms: f64,
}

impl Run {
    fn delivered_pct(&self) -> f64 {
        100.0 * self.delivered as f64 / self.sent.max(1) as f64
    }
    fn cost_ms(&self) -> f64 {
        1e3 * self.worker_cpu_s / self.decoded.max(1) as f64
    }
}

/// On-CPU seconds so far of this process's threads whose name starts with `prefix`
/// (/proc/self/task/*/schedstat, field 1, nanoseconds).
fn threads_cpu(prefix: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ns = 0u64;
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

fn run(codec: &str, secs: u64) -> Run {
    let mut client = AiortcPeer::spawn();
    let peer = Arc::new(
        Peer::new(
            PeerConfig {
                bind_ip: Some("127.0.0.1".parse().unwrap()),
                video_in_enabled: true,
                audio_in_enabled: false,
                audio_out_enabled: false,
                ..PeerConfig::default()
            },
            None,
        )
        .expect("peer"),
    );

    // The app: reads every frame as soon as it is decoded.
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let reader = {
        let (peer, stop, delivered) = (peer.clone(), stop.clone(), delivered.clone());
        std::thread::spawn(move || {
            let mut frame = VideoFrame::new(VideoSource::Camera);
            let mut last: Option<Instant> = None;
            let mut max_gap = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                if peer
                    .read_video_into(
                        VideoSource::Camera,
                        &mut frame,
                        Some(Duration::from_millis(100)),
                    )
                    .is_ok()
                {
                    assert_eq!((frame.width, frame.height), (640, 480));
                    let now = Instant::now();
                    if let Some(l) = last {
                        max_gap = max_gap.max(now - l);
                    }
                    last = Some(now);
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            max_gap
        })
    };

    let offer = client.offer(json!({
        "audio": false,
        "video_pattern": "swrtc",
        "video_size": [640, 480],
        "video_fps": FPS,
        "video_codec": codec,
    }));
    let answer = peer.handle_offer(&offer).expect("answer");
    assert_eq!(video_codecs(&answer)[0][0], codec, "negotiated codec");
    let cpu0 = threads_cpu("swrtc-worker");
    client.answer(&answer);
    client.wait_channel_open(T);
    peer.connect().expect("connect");

    // Let aiortc send `secs` of video, then stop its track: its count is then final.
    let want = secs * FPS;
    let end = Instant::now() + Duration::from_secs(secs * 2) + T;
    loop {
        let sent = client.video_sent()["camera"].as_u64().unwrap_or(0);
        if sent >= want {
            break;
        }
        assert!(
            Instant::now() < end,
            "aiortc sent only {sent} of {want} frames"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let sent = client.video_pause(true)["camera"]
        .as_u64()
        .expect("camera count");

    // Wait for the last frames to come through: nothing new for 1 s.
    let end = Instant::now() + T;
    let mut seen = (u64::MAX, u64::MAX);
    let mut quiet_since = Instant::now();
    while Instant::now() < end {
        let now = (
            delivered.load(Ordering::Relaxed),
            peer.video_stats().in_frames_decoded[0],
        );
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let worker_cpu_s = threads_cpu("swrtc-worker") - cpu0;
    stop.store(true, Ordering::Relaxed);
    let max_gap = reader.join().expect("reader");
    let (st, s) = (peer.video_stats(), peer.stats().expect("stats"));
    client.close();
    Run {
        sent,
        delivered: delivered.load(Ordering::Relaxed),
        decoded: st.in_frames_decoded[0],
        overwritten: st.in_frames_overwritten[0],
        dropped: st.in_frames_dropped[0],
        decode_errors: st.in_decode_errors[0],
        frames_in: s.video_frames_in,
        keyframe_requests: s.keyframe_requests,
        worker_cpu_s,
        max_gap_ms: max_gap.as_secs_f64() * 1e3,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let secs: u64 = arg("--secs").and_then(|v| v.parse().ok()).unwrap_or(20);
    let runs: usize = arg("--runs").and_then(|v| v.parse().ok()).unwrap_or(3);
    let codecs = arg("--codecs").unwrap_or_else(|| "VP8,H264".into());

    println!(
        "video delivery: aiortc sends 640x480@{FPS} for {secs} s on loopback, the app reads \
         every frame; {runs} runs per codec"
    );
    let mut summary = Vec::new();
    for codec in codecs.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let mut results = Vec::new();
        for i in 0..runs {
            let r = run(codec, secs);
            println!(
                "  {codec} run {}: sent {}, received {}, decoded {}, delivered {} ({:.2} %), \
                 overwritten {}, dropped {}, decode errors {}, keyframe requests {}, \
                 longest gap {:.0} ms, worker CPU {:.3} ms/frame",
                i + 1,
                r.sent,
                r.frames_in,
                r.decoded,
                r.delivered,
                r.delivered_pct(),
                r.overwritten,
                r.dropped,
                r.decode_errors,
                r.keyframe_requests,
                r.max_gap_ms,
                r.cost_ms()
            );
            results.push(r);
        }
        let pct = median(results.iter().map(Run::delivered_pct).collect());
        let cost = median(results.iter().map(Run::cost_ms).collect());
        summary.push(format!(
            "{codec}: delivered/sent median {pct:.2} % (target >= 99 %: {}), decode + convert \
             {cost:.3} ms/frame (worker CPU, median)",
            if pct >= 99.0 { "met" } else { "MISSED" }
        ));
    }
    println!("summary (median of {runs} runs):");
    for line in summary {
        println!("  {line}");
    }
}
