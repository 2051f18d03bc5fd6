//! End-to-end signalling benchmark (not a test), over loopback: the echo bot behind the
//! real HTTP server (`signalling::Server` with `echo::on_peer`, in this process) and the
//! aiortc client (`tests/peers/aiortc_peer.py`, like Pipecat's JS client: audio sendrecv
//! with a continuous 440 Hz tone from the start, video sendrecv, a data channel), for
//! 10 connections after one warm-up. Per connection, on this process's clock, from the
//! instant before the `POST /api/offer` connects:
//!
//! - POST → answer: the whole HTTP response read (one connection per request, like `fetch`);
//! - POST → ICE connected: aiortc's `connectionState` "connected";
//! - POST → data channel open: aiortc's `channel_open`;
//! - POST → first echoed audio: aiortc's `first_audio`, the first received audio frame with
//!   a sample ≥ 300 of 32768 (the server sends digital silence until the echo starts; the
//!   echoed tone peaks near 2300). aiortc's jitter buffer holds 4 packets (80 ms) before it
//!   decodes, so about that much of this figure is aiortc's.
//!
//! Each time is when the event line reaches this process (the pipe adds well under 1 ms),
//! so no clock crosses processes. aiortc's offer is gathered before the POST (as a
//! browser's is before `fetch`). The end-of-candidates PATCH goes out on another thread
//! right after the answer, as Pipecat's client trickles while it applies the answer.
//! Prints the median (of an even count: the mean of the middle two) and p95 (nearest rank)
//! of each, and the target check: POST → answer ≤ 5 ms median.
//!
//! Then, without media, what a cross-origin `fetch` does (Pipecat's client on another
//! origin): a CORS preflight `OPTIONS` and the `POST` on the same kept-alive connection,
//! a synthetic offer, timed to the response head (when `fetch` resolves) and to the whole
//! body (when `res.json()` can resolve), next to a fresh connection per POST.
//!
//! `SWRTC_E2E_RUNS` (default 10) sets the number of connections, `SWRTC_E2E_VIDEO=0` makes
//! the offer audio-only. The Chromium side is `benches/browser_medians.sh`.
//!
//!     cargo bench --bench signalling_e2e

// The test peers and the HTTP helper live with the tests; the bench reuses them.
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/signalling_support/mod.rs"]
mod signalling_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use serde_json::json;
use signalling_support::{patch_json, post_json, synthetic_offer};
use smallwebrtc::signalling::{echo, Server, ServerConfig};

const T: Duration = Duration::from_secs(20);
/// Onset threshold of the first echoed audio frame (of 32768).
const FIRST_AUDIO_THRESHOLD: u32 = 300;
/// Target from the issue: POST → answer median on loopback.
const ANSWER_TARGET_MS: f64 = 5.0;

struct Run {
    answer: f64,
    ice: f64,
    channel: f64,
    audio: f64,
    first_audio_frames: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn median(v: &[f64]) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return f64::NAN;
    }
    if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}

/// Nearest rank (of 10: the largest).
fn p95(v: &[f64]) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return f64::NAN;
    }
    s[((s.len() as f64 * 0.95).ceil() as usize).clamp(1, s.len()) - 1]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn one_connection(server: &Server, client: &mut AiortcPeer, video: bool) -> Run {
    let addr = server.local_addr();
    let offer = client.offer(json!({
        "audio": true, "video": video, "tone_hz": 440,
        "first_audio_threshold": FIRST_AUDIO_THRESHOLD,
    }));
    let pc = client.current_pc();
    let body = json!({"sdp": offer, "type": "offer", "pc_id": null, "restart_pc": false,
                      "request_data": {"bench": "signalling_e2e"}});

    let t0 = Instant::now();
    let r = post_json(addr, "/api/offer", &body);
    let answer = t0.elapsed();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let a = r.json();
    assert_eq!(a["type"], "answer");
    let pc_id = a["pc_id"].as_str().expect("pc_id").to_owned();
    let sdp = a["sdp"].as_str().expect("sdp").to_owned();

    // aiortc gathers fully; it trickles only the end-of-candidates, in parallel.
    let patch = std::thread::spawn(move || {
        patch_json(
            addr,
            "/api/offer",
            &json!({"pc_id": pc_id, "candidates": [
                {"candidate": "", "sdp_mid": "0", "sdp_mline_index": 0}]}),
        )
        .status
    });
    // Send the answer without waiting for "answered": every event is timed as it arrives.
    client.send(json!({"cmd": "answer", "sdp": sdp}));
    let (mut answered, mut ice, mut channel, mut audio) = (false, None, None, None);
    let mut first_audio_frames = 0;
    while !(answered && ice.is_some() && channel.is_some() && audio.is_some()) {
        let ev = client.wait_event(T, |e| {
            let this_pc = e["pc"] == pc;
            match e["event"].as_str() {
                Some("answered") => true,
                Some("error") => true,
                Some("connection_state") => this_pc && e["state"] == "connected",
                Some("channel_open") | Some("first_audio") => this_pc,
                _ => false,
            }
        });
        let at = t0.elapsed();
        match ev["event"].as_str() {
            Some("answered") => answered = true,
            Some("connection_state") => ice = ice.or(Some(at)),
            Some("channel_open") => channel = channel.or(Some(at)),
            Some("first_audio") => {
                audio = audio.or(Some(at));
                first_audio_frames = ev["frames"].as_u64().unwrap_or(0);
            }
            _ => panic!("aiortc error: {ev}"),
        }
    }
    assert_eq!(patch.join().unwrap(), 200, "PATCH end-of-candidates");
    Run {
        answer: ms(answer),
        ice: ms(ice.unwrap()),
        channel: ms(channel.unwrap()),
        audio: ms(audio.unwrap()),
        first_audio_frames,
    }
}

/// Reads one response with a Content-Length; returns (head arrived, body complete) after t0.
fn read_response(s: &mut TcpStream, t0: Instant) -> (f64, f64) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut head_at = None;
    loop {
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed mid-response");
        head_at.get_or_insert_with(|| ms(t0.elapsed()));
        buf.extend_from_slice(&chunk[..n]);
        if let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 2"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("Content-Length");
            if buf.len() >= split + 4 + len {
                return (head_at.unwrap(), ms(t0.elapsed()));
            }
        }
    }
}

/// POST → answer head and body: after a preflight on the same connection, and fresh.
fn keep_alive_section(runs: usize) {
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let server = Server::start(cfg, None).expect("server starts");
    let addr: SocketAddr = server.local_addr();
    let body = json!({"sdp": synthetic_offer(), "type": "offer"}).to_string();
    let post = |conn: &str| {
        format!(
            "POST /api/offer HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://127.0.0.1:1\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n{body}",
            body.len()
        )
    };
    let preflight = format!(
        "OPTIONS /api/offer HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://127.0.0.1:1\r\n\
         Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"
    );
    let (mut ka_head, mut ka_body, mut fresh_head, mut fresh_body) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..=runs {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let t0 = Instant::now();
        s.write_all(preflight.as_bytes()).unwrap();
        read_response(&mut s, t0);
        let t0 = Instant::now();
        s.write_all(post("keep-alive").as_bytes()).unwrap();
        let (h, b) = read_response(&mut s, t0);
        drop(s);
        drop(server.accept(Some(Duration::from_secs(1))));
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let t0 = Instant::now();
        s.write_all(post("close").as_bytes()).unwrap();
        let (fh, fb) = read_response(&mut s, t0);
        drop(s);
        drop(server.accept(Some(Duration::from_secs(1))));
        if i > 0 {
            ka_head.push(h);
            ka_body.push(b);
            fresh_head.push(fh);
            fresh_body.push(fb);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "\nPOST /api/offer (synthetic audio+video offer, no media), {runs} each after 1 warm-up (ms):"
    );
    println!(
        "  {:<52} {:>9} {:>9} {:>9} {:>9}",
        "", "median", "p95", "min", "max"
    );
    for (name, v) in [
        (
            "after a preflight, same connection: response head",
            &ka_head,
        ),
        ("after a preflight, same connection: whole body", &ka_body),
        ("fresh connection: response head", &fresh_head),
        ("fresh connection: whole body", &fresh_body),
    ] {
        let s = sorted(v);
        println!(
            "  {:<52} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            name,
            median(v),
            p95(v),
            s[0],
            s[s.len() - 1]
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let runs = env_usize("SWRTC_E2E_RUNS", 10).max(1);
    let video = std::env::var("SWRTC_E2E_VIDEO").map_or(true, |v| v != "0");
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        peer: echo::echo_peer_config(),
        ..ServerConfig::default()
    };
    let server = Server::start(cfg, Some(echo::on_peer(true))).expect("server starts");
    let mut client = AiortcPeer::spawn();

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "signalling e2e: in-process echo server on {} + aiortc client, {} (tone 440 Hz), \
         {runs} connections after 1 warm-up; load average at start: {}",
        server.local_addr(),
        if video { "audio + video" } else { "audio only" },
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let mut all = Vec::new();
    for i in 0..=runs {
        let r = one_connection(&server, &mut client, video);
        println!(
            "  {:<7} POST→answer {:7.2} ms  →ICE connected {:7.1} ms  →dc open {:7.1} ms  \
             →first echoed audio {:7.1} ms (frame {})",
            if i == 0 {
                "warm-up".to_owned()
            } else {
                format!("run {i}")
            },
            r.answer,
            r.ice,
            r.channel,
            r.audio,
            r.first_audio_frames
        );
        if i > 0 {
            all.push(r);
        }
        // The next offer closes this connection; let the server see it go.
        std::thread::sleep(Duration::from_millis(300));
    }
    client.close();
    drop(server);

    let rows: [(&str, Vec<f64>); 4] = [
        ("POST → answer", all.iter().map(|r| r.answer).collect()),
        ("POST → ICE connected", all.iter().map(|r| r.ice).collect()),
        (
            "POST → data channel open",
            all.iter().map(|r| r.channel).collect(),
        ),
        (
            "POST → first echoed audio",
            all.iter().map(|r| r.audio).collect(),
        ),
    ];
    println!("\naiortc, {} connections (ms):", all.len());
    println!(
        "  {:<28} {:>9} {:>9} {:>9} {:>9}",
        "", "median", "p95", "min", "max"
    );
    for (name, v) in &rows {
        let s = sorted(v);
        println!(
            "  {:<28} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            name,
            median(v),
            p95(v),
            s[0],
            s[s.len() - 1]
        );
    }
    let m = median(&rows[0].1);
    println!(
        "\ntarget POST → answer ≤ {ANSWER_TARGET_MS} ms median: {:.2} ms ({:.2}× the target) {}",
        m,
        m / ANSWER_TARGET_MS,
        if m <= ANSWER_TARGET_MS {
            "MET"
        } else {
            "NOT MET"
        }
    );

    keep_alive_section(runs);
}
