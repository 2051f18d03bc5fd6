//! Audio benchmarks (not tests), over loopback:
//!
//! 1. Echo round trip measured by aiortc: aiortc sends 60 ms bursts of a 1 kHz tone every
//!    500 ms (digital silence between), the app echoes `read_audio` → `try_write_audio`
//!    at 48 kHz in and out (no resampling anywhere in the library), and aiortc reports the
//!    time from handing a burst's first frame to its encoder to the echoed onset in its
//!    decoded track (both on its own clock). aiortc's audio jitter buffer holds 4 packets
//!    (prefetch=4, 80 ms) before it decodes, so that much of each round trip is aiortc's.
//! 2. The library's own share, in-process with the str0m test client on one clock, same
//!    bursts and rates: client send → `read_audio` returns the onset frame (mic packet in →
//!    read_audio out); the whole in-process echo (client send → client receives the echoed
//!    onset); and `write_audio` → client receives the packet, minus the audio queued before
//!    the write (bursts written by the app at phases spread over the 20 ms packet slot).
//! 3. CPU per bidirectional session-second of the runtime's `swrtc-*` threads for 20
//!    str0m-client sessions sending a continuous 1 kHz tone in real time (pre-encoded
//!    20 ms Opus packets) and echoing it through the library, next to libopus alone
//!    (the library's `OpusDecoder`/`OpusEncoder` at the peer's settings) over the same
//!    amount of audio on one thread, at the default 16 kHz in / 24 kHz out (the echo
//!    thread upsamples 2:3 linearly; both rates are Opus-native so the library does not
//!    resample) and at 48 kHz in / 48 kHz out. The `push` variants echo from the peer's
//!    audio callback on the runtime's workers instead, with no app thread per session.
//!
//! Every figure is the median of several runs (SWRTC_BENCH_RUNS, default 3); CPU ratios
//! are against the Opus-only baseline measured in the same run; latencies are also shown
//! as a ratio of their target from the issue.
//!
//!     cargo bench --bench audio
//!     SWRTC_BENCH_ONLY=cpu16,cpu16push cargo bench --bench audio   # parts: aiortc, inproc,
//!                                                                # cpu16, cpu48, cpu16push, cpu48push

// The test peers live with the tests; the bench reuses them rather than copying them.
#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use common::str0m_client::{tone, ClientEvent, ClientOptions, TestClient};
use serde_json::json;
use smallwebrtc::media::audio::{AudioFrame, OpusDecoder, OpusEncoder};
use smallwebrtc::{ErrorKind, Peer, PeerConfig, Runtime, RuntimeConfig};

const T: Duration = Duration::from_secs(20);
/// Latency runs: rate in and out (48 kHz: no resampling on either side).
const LAT_RATE: u32 = 48_000;
/// Bursts: 3 packets of tone every 25 packets (60 ms every 500 ms).
const BURST_PACKETS: u64 = 3;
const PERIOD_PACKETS: u64 = 25;
/// Bursts measured per run (at least 30).
const BURSTS: usize = 32;
/// Onset threshold in the Rust detectors (tone peak is 0.3 FS ≈ 9830).
const ONSET_THRESHOLD: u16 = 1000;
/// CPU runs: sessions and measured window.
const CPU_SESSIONS: usize = 20;
const CPU_WINDOW: Duration = Duration::from_secs(20);
const CPU_WARMUP: Duration = Duration::from_secs(3);
/// Opus settings of the library's defaults (and of the baseline).
const BITRATE: u32 = 32_000;
const COMPLEXITY: u8 = 5;
const FEC: bool = true;

fn runs() -> usize {
    std::env::var("SWRTC_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(3)
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let s = sorted(v);
    if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}

fn p95(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let s = sorted(v);
    s[((s.len() as f64 * 0.95).ceil() as usize).clamp(1, s.len()) - 1]
}

fn fmt_list(v: &[f64], digits: usize) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:.digits$}")).collect();
    format!("[{}]", items.join(", "))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------
// CPU accounting: on-CPU nanoseconds from /proc/.../schedstat (field 1), per thread.

fn schedstat_ns(path: &std::path::Path) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// CPU seconds used so far by this process's threads whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ns = 0u64;
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            ns += schedstat_ns(&t.path().join("schedstat")).unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

/// CPU seconds so far of this process's `swrtc-*` threads, by thread name without a
/// trailing number (swrtc-io, swrtc-worker, swrtc-audio-clock, swrtc-dispatch, ...).
fn runtime_cpu_by_kind() -> std::collections::BTreeMap<String, f64> {
    let mut m = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return m;
    };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if !comm.starts_with("swrtc-") {
            continue;
        }
        let kind = comm
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches('-');
        *m.entry(kind.to_string()).or_insert(0.0) +=
            schedstat_ns(&t.path().join("schedstat")).unwrap_or(0) as f64 / 1e9;
    }
    m
}

/// CPU seconds used so far by the calling thread.
fn own_cpu() -> f64 {
    schedstat_ns(std::path::Path::new("/proc/thread-self/schedstat")).unwrap_or(0) as f64 / 1e9
}

// ---------------------------------------------------------------------------------------
// Signals.

/// Finds onsets: the first sample at or above the threshold after at least `quiet`
/// samples below it.
struct Onset {
    quiet_run: usize,
    need: usize,
}

impl Onset {
    fn new(rate: u32) -> Onset {
        Onset {
            quiet_run: 0,
            need: rate as usize / 10,
        }
    }

    /// The index of an onset in `s`, if one starts there.
    fn feed(&mut self, s: &[i16]) -> Option<usize> {
        let mut found = None;
        for (i, &x) in s.iter().enumerate() {
            if x.unsigned_abs() >= ONSET_THRESHOLD {
                if found.is_none() && self.quiet_run >= self.need {
                    found = Some(i);
                }
                self.quiet_run = 0;
            } else {
                self.quiet_run += 1;
            }
        }
        found
    }
}

/// Opus packets (48 kHz mono, 20 ms, the library's encoder at the default settings) of
/// `count` packets: bursts of tone, or a continuous tone.
fn encode_packets(count: u64, bursts: bool) -> Vec<Vec<u8>> {
    let mut enc = OpusEncoder::new(48_000, 1, BITRATE, COMPLEXITY, FEC).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4000];
    for k in 0..count {
        let pcm = if !bursts {
            tone(1000.0, k * 960, 960, 48_000)
        } else if k % PERIOD_PACKETS < BURST_PACKETS {
            tone(1000.0, (k % PERIOD_PACKETS) * 960, 960, 48_000)
        } else {
            vec![0; 960]
        };
        let n = enc.encode(&pcm, &mut buf).unwrap();
        out.push(buf[..n].to_vec());
    }
    out
}

/// 2:3 linear upsampling (16 kHz → 24 kHz, one input sample of delay), the app's job in
/// the default-rate echo.
fn up_2_3(inp: &[i16], last: &mut i16, out: &mut Vec<i16>) {
    out.clear();
    for pair in inp.chunks(2) {
        let (p, a, b) = (
            *last as i32,
            pair[0] as i32,
            *pair.get(1).unwrap_or(&pair[0]) as i32,
        );
        out.push(p as i16);
        out.push(((p + 2 * a) / 3) as i16);
        out.push(((2 * a + b) / 3) as i16);
        *last = b as i16;
    }
}

fn lat_cfg(rate_in: u32, rate_out: u32) -> PeerConfig {
    PeerConfig {
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        audio_in_sample_rate: rate_in,
        audio_out_sample_rate: rate_out,
        ..PeerConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// 1. aiortc echo round trip.

struct AiortcRun {
    rtts: Vec<f64>,
    unmatched: u64,
    queued_max_ms: f64,
}

fn aiortc_echo_run() -> AiortcRun {
    let mut client = AiortcPeer::spawn();
    let peer = Arc::new(Peer::new(lat_cfg(LAT_RATE, LAT_RATE), None).unwrap());
    let offer = client.offer(json!({
        "audio": true, "video_line": false, "video": false,
        "bursts": {"hz": 1000, "dbfs": -20, "burst_ms": 60, "period_ms": 500},
    }));
    client.answer(&peer.handle_offer(&offer).unwrap());
    client.wait_channel_open(T);
    peer.connect().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let queued_max = Arc::new(Mutex::new(0f64));
    let echo = {
        let (peer, stop, queued_max) = (peer.clone(), stop.clone(), queued_max.clone());
        std::thread::Builder::new()
            .name("app-echo".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match peer.read_audio(Some(Duration::from_millis(100))) {
                        Ok(frame) => {
                            let q = peer.audio_queued().map(ms).unwrap_or(0.0);
                            let mut m = queued_max.lock().unwrap();
                            *m = m.max(q);
                            drop(m);
                            match peer.try_write_audio(&frame.samples) {
                                Ok(()) => {}
                                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                                Err(e) => panic!("write_audio: {e}"),
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::Timeout => {}
                        Err(e) if e.kind() == ErrorKind::Closed => return,
                        Err(e) => panic!("read_audio: {e}"),
                    }
                }
            })
            .unwrap()
    };
    // Warm-up: let the path and aiortc's jitter buffer settle, then start counting.
    std::thread::sleep(Duration::from_secs(2));
    client.send(json!({"cmd": "latency", "reset": true}));
    client.wait_event(T, |e| e["event"] == "latency");
    *queued_max.lock().unwrap() = 0.0;
    let until = Instant::now() + Duration::from_secs(40);
    let ev = loop {
        std::thread::sleep(Duration::from_secs(1));
        client.send(json!({"cmd": "latency"}));
        let ev = client.wait_event(T, |e| e["event"] == "latency");
        let n = ev["rtts_ms"].as_array().map_or(0, |a| a.len());
        if n >= BURSTS || Instant::now() > until {
            break ev;
        }
    };
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    let rtts: Vec<f64> = ev["rtts_ms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_f64())
        .take(BURSTS)
        .collect();
    let unmatched = ev["unmatched"].as_u64().unwrap_or(0);
    client.close();
    let queued_max_ms = *queued_max.lock().unwrap();
    AiortcRun {
        rtts,
        unmatched,
        queued_max_ms,
    }
}

// ---------------------------------------------------------------------------------------
// 2. In-process latency with the str0m client.

#[derive(Default)]
struct InProcRun {
    /// client send → read_audio returned the onset frame.
    read: Vec<f64>,
    /// client send → client received the echoed onset.
    echo_rtt: Vec<f64>,
    /// app write of the onset frame → client received it, minus audio queued before.
    echo_write: Vec<f64>,
    /// Audio queued before the echo's onset writes (ms).
    echo_queued: Vec<f64>,
    /// Dedicated bursts: write_audio → client received, minus audio queued before.
    write: Vec<f64>,
    write_queued: Vec<f64>,
}

/// Collects the client's audio packets until `until`, decoding them and calling `on_onset`
/// with the receive time of every onset packet.
fn client_onsets(client: &TestClient, until: Instant, mut on_onset: impl FnMut(Instant)) {
    let mut dec = OpusDecoder::new(48_000, 1).unwrap();
    let mut det = Onset::new(48_000);
    let mut pcm = vec![0i16; 5760];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let Some(ClientEvent::AudioPacket { payload, .. }) =
            client.wait_for(left, |e| matches!(e, ClientEvent::AudioPacket { .. }))
        else {
            continue;
        };
        let t = Instant::now();
        if let Ok(n) = dec.decode(&payload, &mut pcm) {
            if det.feed(&pcm[..n]).is_some() {
                on_onset(t);
            }
        }
    }
}

fn latest_before(v: &Mutex<Vec<(Instant, f64)>>, t: Instant) -> Option<(Instant, f64)> {
    v.lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(s, _)| *s <= t)
        .copied()
        .filter(|(s, _)| t - *s < Duration::from_millis(490))
}

fn inproc_run() -> InProcRun {
    let mut client = TestClient::new(ClientOptions {
        video: false,
        ..ClientOptions::default()
    });
    let peer = Arc::new(Peer::new(lat_cfg(LAT_RATE, LAT_RATE), None).unwrap());
    let offer = client.offer();
    client
        .accept_answer(&peer.handle_offer(&offer).unwrap())
        .unwrap();
    assert!(client
        .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
        .is_some());
    peer.connect().unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let warm = 2 * PERIOD_PACKETS; // 1 s before counting
    let total = warm + BURSTS as u64 * PERIOD_PACKETS + PERIOD_PACKETS / 2;
    let packets = encode_packets(total, true);
    let sent: Mutex<Vec<(Instant, f64)>> = Mutex::new(Vec::new());
    let written: Mutex<Vec<(Instant, f64)>> = Mutex::new(Vec::new());
    let read_lat: Mutex<Vec<f64>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let t0 = Instant::now() + Duration::from_millis(20);
    let end = t0 + Duration::from_millis(20 * total + 300);
    let mut out = InProcRun::default();

    // Phase A: client bursts echoed by the app.
    std::thread::scope(|s| {
        s.spawn(|| {
            for (k, p) in packets.iter().enumerate() {
                let due = t0 + Duration::from_millis(20 * k as u64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let now = Instant::now();
                if (k as u64).is_multiple_of(PERIOD_PACKETS) && k as u64 >= warm {
                    sent.lock().unwrap().push((now, 0.0));
                }
                client.send_opus(p.clone(), k as u64 * 960);
            }
        });
        s.spawn(|| {
            let mut det = Onset::new(LAT_RATE);
            while !stop.load(Ordering::Relaxed) {
                match peer.read_audio(Some(Duration::from_millis(50))) {
                    Ok(frame) => {
                        let t = Instant::now();
                        let onset = det.feed(&frame.samples).is_some();
                        if onset {
                            if let Some((s, _)) = latest_before(&sent, t) {
                                read_lat.lock().unwrap().push(ms(t - s));
                            }
                        }
                        let q = peer.audio_queued().map(ms).unwrap_or(0.0);
                        let tw = Instant::now();
                        match peer.try_write_audio(&frame.samples) {
                            Ok(()) => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            Err(e) => panic!("write_audio: {e}"),
                        }
                        if onset {
                            written.lock().unwrap().push((tw, q));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Timeout => {}
                    Err(e) => panic!("read_audio: {e}"),
                }
            }
        });
        client_onsets(&client, end, |t| {
            if let Some((s, _)) = latest_before(&sent, t) {
                out.echo_rtt.push(ms(t - s));
            }
            if let Some((w, q)) = latest_before(&written, t) {
                out.echo_write.push(ms(t - w) - q);
                out.echo_queued.push(q);
            }
        });
        stop.store(true, Ordering::Relaxed);
    });
    out.read = read_lat.into_inner().unwrap();

    // Phase B: the app writes 60 ms bursts on its own, at phases spread over the slot.
    let writes: Mutex<Vec<(Instant, f64)>> = Mutex::new(Vec::new());
    let burst = tone(1000.0, 0, LAT_RATE as usize * 60 / 1000, LAT_RATE);
    let t1 = Instant::now() + Duration::from_millis(600);
    let end = t1 + Duration::from_millis(500 * BURSTS as u64 + 400);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..BURSTS as u64 {
                let due = t1 + Duration::from_millis(500 * i + (i * 7) % 20);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let q = peer.audio_queued().map(ms).unwrap_or(0.0);
                let tw = Instant::now();
                peer.try_write_audio(&burst).unwrap();
                writes.lock().unwrap().push((tw, q));
            }
        });
        client_onsets(&client, end, |t| {
            if let Some((w, q)) = latest_before(&writes, t) {
                out.write.push(ms(t - w) - q);
                out.write_queued.push(q);
            }
        });
    });
    if std::env::var_os("SWRTC_BENCH_DEBUG").is_some() {
        eprintln!("  read {}", fmt_list(&out.read, 1));
        eprintln!("  echo queued {}", fmt_list(&out.echo_queued, 0));
        eprintln!("  echo write {}", fmt_list(&out.echo_write, 1));
        eprintln!("  write {}", fmt_list(&out.write, 1));
    }
    let st = peer.audio_stats();
    if st.in_packets_lost + st.in_frames_dropped + st.out_packets_dropped > 0 {
        eprintln!("  (in-process run: {st:?})");
    }
    client.close();
    out
}

// ---------------------------------------------------------------------------------------
// 3. CPU.

struct CpuRun {
    /// swrtc-* CPU seconds per session-second by thread kind.
    by_kind: Vec<(String, f64)>,
    /// swrtc-* CPU seconds per session-second.
    runtime: f64,
    /// app echo threads (read_audio + try_write_audio, plus the 2:3 upsampling at 16/24 k).
    app: f64,
    /// libopus decode + encode alone per session-second (audio-second).
    opus: f64,
    opus_dec: f64,
    opus_enc: f64,
    /// Fractions of the expected packets decoded and sent in the window.
    decoded_frac: f64,
    sent_frac: f64,
    client: f64,
}

/// The CPU run's app echo of one frame: upsampled 2:3 when the output rate differs.
fn echo_frame(peer: &Peer, frame: &AudioFrame, rate_out: u32, last: &mut i16, up: &mut Vec<i16>) {
    let pcm: &[i16] = if frame.sample_rate == rate_out {
        &frame.samples
    } else {
        up_2_3(&frame.samples, last, up);
        up
    };
    match peer.try_write_audio(pcm) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(e) => panic!("write_audio: {e}"),
    }
}

/// `push`: the app echoes from the peer's audio callback on the runtime's workers instead of
/// one `read_audio` thread per session (its work then counts in the runtime's threads).
fn cpu_run(rate_in: u32, rate_out: u32, push: bool) -> CpuRun {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let mut pairs = Vec::new();
    for _ in 0..CPU_SESSIONS {
        let mut client = TestClient::new(ClientOptions {
            video: false,
            ..ClientOptions::default()
        });
        let peer = Peer::with_runtime(&rt, lat_cfg(rate_in, rate_out), None).unwrap();
        let offer = client.offer();
        client
            .accept_answer(&peer.handle_offer(&offer).unwrap())
            .unwrap();
        pairs.push((client, Arc::new(peer)));
    }
    for (client, peer) in &pairs {
        assert!(client
            .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
            .is_some());
        peer.connect().unwrap();
    }
    let packets = encode_packets(100, false); // 2 s of tone (whole periods), looped
    let stop = AtomicBool::new(false);
    let mut result = None;
    std::thread::scope(|s| {
        if push {
            for (_, peer) in &pairs {
                let weak = Arc::downgrade(peer);
                let mut up = Vec::new();
                let mut last = 0i16;
                peer.set_audio_callback(Some(Box::new(move |frame: &AudioFrame| {
                    if let Some(peer) = weak.upgrade() {
                        echo_frame(&peer, frame, rate_out, &mut last, &mut up);
                    }
                })))
                .unwrap();
            }
        }
        // Echo threads, one per session (named app-echo-N, outside swrtc-*).
        for (i, (_, peer)) in pairs.iter().enumerate().filter(|_| !push) {
            let peer = peer.clone();
            let stop = &stop;
            std::thread::Builder::new()
                .name(format!("app-echo-{i}"))
                .spawn_scoped(s, move || {
                    let mut up = Vec::new();
                    let mut last = 0i16;
                    while !stop.load(Ordering::Relaxed) {
                        match peer.read_audio(Some(Duration::from_millis(50))) {
                            Ok(frame) => echo_frame(&peer, &frame, rate_out, &mut last, &mut up),
                            Err(e) if e.kind() == ErrorKind::Timeout => {}
                            Err(e) => panic!("read_audio: {e}"),
                        }
                    }
                })
                .unwrap();
        }
        // The client sender: one thread, all sessions, every 20 ms.
        std::thread::Builder::new()
            .name("bench-sender".into())
            .spawn_scoped(s, || {
                let t0 = Instant::now();
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = t0 + Duration::from_millis(20 * k);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    for (client, _) in &pairs {
                        client.send_opus(packets[(k % 100) as usize].clone(), k * 960);
                    }
                    k += 1;
                    if k.is_multiple_of(50) {
                        for (client, _) in &pairs {
                            let _ = client.take_events(); // keep the event queues short
                        }
                    }
                }
            })
            .unwrap();
        std::thread::sleep(CPU_WARMUP);
        let stats0: Vec<_> = pairs.iter().map(|(_, p)| p.audio_stats()).collect();
        let kinds0 = runtime_cpu_by_kind();
        let (c0, a0, k0) = (
            threads_cpu("swrtc-"),
            threads_cpu("app-echo-"),
            threads_cpu("str0m-client"),
        );
        let w0 = Instant::now();
        std::thread::sleep(CPU_WINDOW);
        let (c1, a1, k1) = (
            threads_cpu("swrtc-"),
            threads_cpu("app-echo-"),
            threads_cpu("str0m-client"),
        );
        let kinds1 = runtime_cpu_by_kind();
        let wall = w0.elapsed().as_secs_f64();
        let stats1: Vec<_> = pairs.iter().map(|(_, p)| p.audio_stats()).collect();
        stop.store(true, Ordering::Relaxed);
        let session_s = wall * CPU_SESSIONS as f64;
        let expected = session_s * 50.0;
        let decoded: u64 = stats0
            .iter()
            .zip(&stats1)
            .map(|(a, b)| b.in_packets_decoded - a.in_packets_decoded)
            .sum();
        let sent: u64 = stats0
            .iter()
            .zip(&stats1)
            .map(|(a, b)| b.out_packets_sent - a.out_packets_sent)
            .sum();
        let dropped: u64 = stats1
            .iter()
            .map(|b| {
                b.in_packets_dropped
                    + b.in_frames_dropped
                    + b.out_packets_dropped
                    + b.in_packets_lost
            })
            .sum();
        if dropped > 0 {
            eprintln!("  (cpu run: {dropped} packets/frames dropped or lost in total)");
        }
        let by_kind: Vec<(String, f64)> = kinds1
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    (v - kinds0.get(k).copied().unwrap_or(0.0)) / session_s,
                )
            })
            .collect();
        result = Some((
            by_kind,
            (c1 - c0) / session_s,
            (a1 - a0) / session_s,
            (k1 - k0) / session_s,
            decoded as f64 / expected,
            sent as f64 / expected,
            session_s,
        ));
    });
    let (by_kind, runtime, app, client, decoded_frac, sent_frac, session_s) = result.unwrap();
    drop(pairs);
    drop(rt);

    // Baseline: libopus alone on this thread, same settings, same amount of audio, one
    // decoder and one encoder per session as in the library.
    let n_packets = (session_s * 50.0).round() as usize;
    let mut decs: Vec<OpusDecoder> = (0..CPU_SESSIONS)
        .map(|_| OpusDecoder::new(rate_in, 1).unwrap())
        .collect();
    let mut encs: Vec<OpusEncoder> = (0..CPU_SESSIONS)
        .map(|_| OpusEncoder::new(rate_out, 1, BITRATE, COMPLEXITY, FEC).unwrap())
        .collect();
    let frame_in = rate_in as usize / 50;
    let frame_out = rate_out as usize / 50;
    // What the encoders see: the decoded tone at the output rate.
    let echoed: Vec<Vec<i16>> = (0..100u64)
        .map(|k| tone(1000.0, k * frame_out as u64, frame_out, rate_out))
        .collect();
    let mut pcm = vec![0i16; 5760];
    let mut buf = vec![0u8; 4000];
    let mut sink = 0usize;
    let d0 = own_cpu();
    for i in 0..n_packets {
        let s = i % CPU_SESSIONS;
        let k = i / CPU_SESSIONS;
        sink += decs[s]
            .decode(&packets[k % 100], &mut pcm[..frame_in])
            .unwrap();
    }
    let d1 = own_cpu();
    for i in 0..n_packets {
        let s = i % CPU_SESSIONS;
        let k = i / CPU_SESSIONS;
        sink += encs[s].encode(&echoed[k % 100], &mut buf).unwrap();
    }
    let e1 = own_cpu();
    std::hint::black_box(sink);
    let opus_dec = (d1 - d0) / session_s;
    let opus_enc = (e1 - d1) / session_s;
    CpuRun {
        by_kind,
        runtime,
        app,
        opus: opus_dec + opus_enc,
        opus_dec,
        opus_enc,
        decoded_frac,
        sent_frac,
        client,
    }
}

// ---------------------------------------------------------------------------------------

fn print_dist(name: &str, per_run: &[Vec<f64>], target: Option<f64>) {
    let meds: Vec<f64> = per_run.iter().map(|v| median(v)).collect();
    let p95s: Vec<f64> = per_run.iter().map(|v| p95(v)).collect();
    let n: Vec<usize> = per_run.iter().map(|v| v.len()).collect();
    let med = median(&meds);
    let p = median(&p95s);
    let tgt = match target {
        Some(t) => format!(
            "; target ≤ {t:.0} ms: median {:.2}×, p95 {:.2}×",
            med / t,
            p / t
        ),
        None => String::new(),
    };
    println!(
        "  {name}: median {med:.1} ms, p95 {p:.1} ms (runs: medians {}, p95 {}, n {n:?}){tgt}",
        fmt_list(&meds, 1),
        fmt_list(&p95s, 1),
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench discovery
    }
    let runs = runs();
    let only = std::env::var("SWRTC_BENCH_ONLY").unwrap_or_default();
    let want = |s: &str| only.is_empty() || only.split(',').any(|o| o == s);

    if want("aiortc") {
        println!(
            "1. Echo round trip seen by aiortc (loopback, {} kHz in/out, app echo \
             read_audio -> try_write_audio; 60 ms 1 kHz bursts every 500 ms; {runs} runs × {BURSTS} bursts)",
            LAT_RATE / 1000
        );
        let mut rtts = Vec::new();
        for _ in 0..runs {
            let r = aiortc_echo_run();
            if r.unmatched > 0 || r.rtts.len() < 30 {
                eprintln!(
                    "  (aiortc run: {} RTTs, {} unmatched onsets)",
                    r.rtts.len(),
                    r.unmatched
                );
            }
            eprintln!(
                "  (aiortc run: most audio queued before an echo write {:.0} ms)",
                r.queued_max_ms
            );
            rtts.push(r.rtts);
        }
        print_dist("RTT", &rtts, None);
        let minus: Vec<Vec<f64>> = rtts
            .iter()
            .map(|v| v.iter().map(|x| x - 80.0).collect())
            .collect();
        print_dist(
            "RTT minus aiortc's 80 ms jitter-buffer prefetch",
            &minus,
            None,
        );
    }

    if want("inproc") {
        println!(
            "2. Library share, in-process with the str0m client (one clock, {} kHz in/out, {runs} runs)",
            LAT_RATE / 1000
        );
        let mut all = Vec::new();
        for _ in 0..runs {
            all.push(inproc_run());
        }
        let col =
            |f: fn(&InProcRun) -> &Vec<f64>| all.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
        print_dist(
            "mic packet sent -> read_audio returns it",
            &col(|r| &r.read),
            Some(25.0),
        );
        print_dist(
            "write_audio -> packet at the client, minus audio queued before (bursts at spread phases)",
            &col(|r| &r.write),
            Some(20.0),
        );
        print_dist(
            "  (audio queued before those writes)",
            &col(|r| &r.write_queued),
            None,
        );
        print_dist(
            "echo: write of the read frame -> packet at the client, minus audio queued before",
            &col(|r| &r.echo_write),
            Some(20.0),
        );
        print_dist(
            "  (audio queued before those echo writes)",
            &col(|r| &r.echo_queued),
            None,
        );
        print_dist(
            "echo round trip: client send -> echoed packet at the client",
            &col(|r| &r.echo_rtt),
            None,
        );
    }

    for (rate_in, rate_out, key, push) in [
        (16_000, 24_000, "cpu16", false),
        (48_000, 48_000, "cpu48", false),
        (16_000, 24_000, "cpu16push", true),
        (48_000, 48_000, "cpu48push", true),
    ] {
        if !want(key) {
            continue;
        }
        println!(
            "3. CPU, {CPU_SESSIONS} echo sessions × {} s, {} kHz in / {} kHz out, Opus {} bit/s, \
             complexity {COMPLEXITY}, FEC on, the app echoing {} ({runs} runs; ms of CPU per \
             session-second)",
            CPU_WINDOW.as_secs(),
            rate_in / 1000,
            rate_out / 1000,
            BITRATE,
            if push {
                "from the audio callback on the workers (its work counts as runtime)"
            } else {
                "on one read_audio thread per session"
            }
        );
        let mut rs = Vec::new();
        for _ in 0..runs {
            rs.push(cpu_run(rate_in, rate_out, push));
        }
        let get = |f: fn(&CpuRun) -> f64| rs.iter().map(f).collect::<Vec<_>>();
        let show = |v: &[f64]| fmt_list(&v.iter().map(|x| x * 1e3).collect::<Vec<_>>(), 3);
        let rt = get(|r| r.runtime);
        let app = get(|r| r.app);
        let opus = get(|r| r.opus);
        let ratio: Vec<f64> = rs.iter().map(|r| r.runtime / r.opus).collect();
        let ratio_app: Vec<f64> = rs.iter().map(|r| (r.runtime + r.app) / r.opus).collect();
        println!(
            "  runtime threads (swrtc-*): {:.3} ms/session-s {}",
            median(&rt) * 1e3,
            show(&rt)
        );
        let kinds: Vec<String> = rs[0].by_kind.iter().map(|(k, _)| k.clone()).collect();
        let parts: Vec<String> = kinds
            .iter()
            .map(|k| {
                let v: Vec<f64> = rs
                    .iter()
                    .map(|r| r.by_kind.iter().find(|(n, _)| n == k).map_or(0.0, |x| x.1))
                    .collect();
                format!("{k} {:.3}", median(&v) * 1e3)
            })
            .collect();
        println!("    by thread (median ms/session-s): {}", parts.join(", "));
        println!(
            "  app echo threads (read_audio + try_write_audio{}): {:.3} ms/session-s {}",
            if rate_in == rate_out {
                ""
            } else {
                " + 2:3 upsampling"
            },
            median(&app) * 1e3,
            show(&app)
        );
        println!(
            "  Opus alone (decode {:.3} + encode {:.3}, one thread, same audio): {:.3} ms/session-s {}",
            median(&get(|r| r.opus_dec)) * 1e3,
            median(&get(|r| r.opus_enc)) * 1e3,
            median(&opus) * 1e3,
            show(&opus)
        );
        println!(
            "  ratio runtime / Opus alone: {:.2}× {} (target ≤ 1.15×); runtime + app threads / Opus alone: {:.2}× {}",
            median(&ratio),
            fmt_list(&ratio, 2),
            median(&ratio_app),
            fmt_list(&ratio_app, 2)
        );
        println!(
            "  packets in the window vs real time: decoded {}, sent {}; test clients (not counted) {:.3} ms/session-s",
            fmt_list(&get(|r| r.decoded_frac), 3),
            fmt_list(&get(|r| r.sent_frac), 3),
            median(&get(|r| r.client)) * 1e3
        );
    }
}
