//! Connection benchmarks (not tests): over loopback with aiortc as the client, the median
//! of 20 offer → answer returned and offer → data channel open; then connect time per
//! client stack (str0m client, aiortc, libdatachannel shaped like Pipecat's C++ transport,
//! and the official Pipecat JS client in headless Chromium): POST of the offer to the echo
//! bot → data channel open on the client, median, p95, max and max/median over 50 connects,
//! against the targets (no connect over 3 × its stack's median; libdatachannel median
//! ≤ 15 ms and max ≤ 100 ms); then the CPU that one runtime spends holding 100 connected
//! idle peers (str0m clients that only ping).
//!
//!     cargo bench --bench connect                 # everything
//!     cargo bench --bench connect -- stacks       # only the per-stack connect times
//!     cargo bench --bench connect -- stacks libdatachannel   # one stack (str0m, aiortc,
//!                                                            # libdatachannel, chromium)
//!
//! Chromium runs with the server in a loopback-only network namespace (`unshare -n`, as
//! the browser tests do; needs root): the bench runs itself again in one for that stack.
//! Without Chromium, node or `unshare` that stack is skipped with a note.

// The test peers live with the tests; the bench reuses them rather than copying them.
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/ldc_peer.rs"]
mod ldc_peer;

use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use common::str0m_client::{ClientEvent, ClientOptions, TestClient};
use serde_json::json;
use smallwebrtc::signalling::{echo, Server, ServerConfig, ServerLimits};
use smallwebrtc::{Peer, PeerConfig, PeerState};

fn cfg() -> PeerConfig {
    PeerConfig {
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        ..PeerConfig::default()
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn p95(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

/// CPU seconds (user + system) used so far by this process's threads whose name starts
/// with `prefix`.
fn thread_cpu(prefix: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
        let Some(rest) = stat.rsplit(')').next() else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 13 {
            let ut: f64 = f[11].parse().unwrap_or(0.0);
            let st: f64 = f[12].parse().unwrap_or(0.0);
            total += (ut + st) / tick;
        }
    }
    total
}

fn connect_times() {
    let mut client = AiortcPeer::spawn();
    let (mut answer_ms, mut open_ms) = (Vec::new(), Vec::new());
    // One warm-up connection: runtime start, certificate, page faults.
    for round in 0..21 {
        let peer = Peer::new(cfg(), None).unwrap();
        let offer = client.offer(json!({"audio": true, "video": true}));
        let t0 = Instant::now();
        let answer = peer.handle_offer(&offer).unwrap();
        let t_answer = t0.elapsed();
        client.answer(&answer);
        client.wait_channel_open(Duration::from_secs(15));
        let t_open = t0.elapsed();
        if round > 0 {
            answer_ms.push(t_answer.as_secs_f64() * 1e3);
            open_ms.push(t_open.as_secs_f64() * 1e3);
        }
        drop(peer);
    }
    println!(
        "aiortc, median of 20: offer -> answer {:.3} ms (p95 {:.3}); offer -> data channel open {:.1} ms (p95 {:.1})",
        median(&mut answer_ms),
        p95(&mut answer_ms),
        median(&mut open_ms),
        p95(&mut open_ms)
    );
}

/// POSTs an offer to the bot's `/api/offer`; the answer SDP.
fn post_offer(server: &Server, offer: &str) -> String {
    let v = common::offer::post_offer(server.local_addr(), offer);
    v["sdp"].as_str().expect("sdp").to_owned()
}

/// Runs `connect` once to warm up, then `n` times; reports the returned POST → data
/// channel open times.
fn stack_times(name: &str, n: usize, mut connect: impl FnMut() -> Duration) {
    connect();
    let ms: Vec<f64> = (0..n).map(|_| connect().as_secs_f64() * 1e3).collect();
    report(name, ms, None);
}

/// Prints median, p95, max and max/median of `ms` (POST → data channel open), whether the
/// stack meets "no connect over 3 × median" and, when given, its (median, max) bound in ms.
fn report(name: &str, mut ms: Vec<f64>, bound: Option<(f64, f64)>) {
    let n = ms.len();
    let med = median(&mut ms);
    let p = p95(&mut ms);
    let max = ms.iter().cloned().fold(0.0, f64::max);
    let mut verdict = vec![format!(
        "max ≤ 3 × median: {}",
        if max <= 3.0 * med { "met" } else { "MISSED" }
    )];
    if let Some((bmed, bmax)) = bound {
        verdict.push(format!(
            "median ≤ {bmed} ms: {}; max ≤ {bmax} ms: {}",
            if med <= bmed { "met" } else { "MISSED" },
            if max <= bmax { "met" } else { "MISSED" }
        ));
    }
    println!(
        "{name:<15} POST -> data channel open over {n}: median {med:.1} ms, p95 {p:.1} ms, max {max:.1} ms, max/median {:.2} ({})",
        max / med,
        verdict.join("; ")
    );
}

/// Every stack, or only the one named `only` (`str0m`, `aiortc`, `libdatachannel`,
/// `chromium`).
fn stacks(only: Option<&str>) {
    let run = |name: &str| only.is_none_or(|o| o == name);
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        peer: echo::echo_peer_config(),
        // Every client comes from 127.0.0.1: no per-source caps here.
        limits: ServerLimits {
            max_peers_per_source: usize::MAX,
            max_connecting_peers_per_source: usize::MAX,
            ..ServerLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = Server::start(cfg, Some(echo::on_peer(true))).unwrap();
    const N: usize = 50;
    if run("str0m") {
        str0m_times(&server, N);
    }
    if run("aiortc") {
        aiortc_times(&server, N);
    }
    if run("libdatachannel") {
        ldc_times(&server, N);
    }
    if run("chromium") {
        chromium_times(N);
    }
}

fn str0m_times(server: &Server, n: usize) {
    stack_times("str0m client", n, || {
        let mut c = TestClient::new(ClientOptions {
            video: false,
            ..ClientOptions::default()
        });
        let offer = c.offer();
        let t0 = Instant::now();
        c.accept_answer(&post_offer(server, &offer)).unwrap();
        c.wait_for(Duration::from_secs(15), |e| {
            matches!(e, ClientEvent::ChannelOpen(_))
        })
        .expect("str0m client: no data channel");
        t0.elapsed()
    });
}

fn aiortc_times(server: &Server, n: usize) {
    let mut client = AiortcPeer::spawn();
    stack_times("aiortc", n, || {
        let offer = client.offer(json!({"audio": true, "video": false}));
        let t0 = Instant::now();
        client.answer(&post_offer(server, &offer));
        client.wait_channel_open(Duration::from_secs(15));
        t0.elapsed()
    });
    client.close();
}

/// libdatachannel: each connect a new peer connection (gathered fully before the POST, as
/// Pipecat's C++ transport does), closed before the next; one attempt each.
fn ldc_times(server: &Server, n: usize) {
    let connect = || {
        let mut c = ldc_peer::connect_new(server.local_addr(), Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("libdatachannel connect: {e}"));
        c.peer.close();
        c.took
    };
    connect();
    let ms: Vec<f64> = (0..n).map(|_| connect().as_secs_f64() * 1e3).collect();
    report("libdatachannel", ms, Some((15.0, 100.0)));
}

/// Chromium with the official Pipecat client: runs this bench again inside a loopback-only
/// network namespace, where [`chromium_inner`] serves the echo bot and drives the browser.
fn chromium_times(n: usize) {
    let Ok(exe) = std::env::current_exe() else {
        println!("chromium        skipped: no path to this bench");
        return;
    };
    let out = std::process::Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" chromium-stack \"$1\"",
        ])
        .arg(exe)
        .arg(n.to_string())
        .stderr(std::process::Stdio::inherit())
        .output();
    match out {
        Ok(o) => {
            print!("{}", String::from_utf8_lossy(&o.stdout));
            if !o.status.success() {
                println!("chromium        failed ({}); see stderr", o.status);
            }
        }
        Err(e) => println!("chromium        skipped: cannot run `unshare -n` ({e})"),
    }
}

fn chromium_inner(n: usize) {
    let root = common::aiortc::repo_root();
    let dir = root.join("tests").join("browser");
    let missing =
        |what: &str| println!("chromium        skipped: {what} (run .ci/setup-browser.sh)");
    if !std::path::Path::new("/usr/bin/chromium").exists()
        && std::env::var_os("SWRTC_CHROMIUM").is_none()
    {
        return missing("no Chromium");
    }
    if !dir.join("node_modules").exists() {
        return missing("no tests/browser/node_modules");
    }
    let built = std::process::Command::new("node")
        .arg("build.mjs")
        .current_dir(&dir)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        return missing("cannot bundle the official client with node");
    }
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        peer: echo::echo_peer_config(),
        // Every client comes from 127.0.0.1: no per-source caps here.
        limits: ServerLimits {
            max_peers_per_source: usize::MAX,
            max_connecting_peers_per_source: usize::MAX,
            ..ServerLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = Server::start(cfg, Some(echo::on_peer(true))).unwrap();
    let out = std::process::Command::new("node")
        .arg(dir.join("connect_times.mjs"))
        .arg(format!("http://{}", server.local_addr()))
        .arg(n.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run node");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    let times: Vec<f64> = v["times"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    if v["ok"] != true || times.len() != n {
        println!("chromium        failed: {line}");
        std::process::exit(1);
    }
    report("chromium", times, None);
}

fn idle_cpu(n: usize, audio_out: bool) {
    let rt = smallwebrtc::Runtime::new(smallwebrtc::RuntimeConfig::default()).unwrap();
    let mut pairs = Vec::new();
    for _ in 0..n {
        let mut client = TestClient::new(ClientOptions::default());
        let peer = Peer::with_runtime(
            &rt,
            PeerConfig {
                audio_out_enabled: audio_out,
                ..cfg()
            },
            None,
        )
        .unwrap();
        let offer = client.offer();
        client
            .accept_answer(&peer.handle_offer(&offer).unwrap())
            .unwrap();
        pairs.push((client, peer));
    }
    for (client, peer) in &pairs {
        assert!(client
            .wait_for(Duration::from_secs(30), |e| matches!(
                e,
                ClientEvent::ChannelOpen(_)
            ))
            .is_some());
        peer.connect().unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(pairs.iter().all(|(_, p)| p.state() == PeerState::Connected));
    let window = Duration::from_secs(10);
    let mut samples = Vec::new();
    for _ in 0..3 {
        let c0 = thread_cpu("swrtc-");
        let t0 = Instant::now();
        std::thread::sleep(window);
        let cpu = thread_cpu("swrtc-") - c0;
        samples.push(cpu / t0.elapsed().as_secs_f64() * 100.0);
    }
    println!(
        "{n} connected idle peers ({}): runtime threads use {:.2} % of one core (median of 3 × 10 s: {:?})",
        if audio_out { "auto-silence Opus out on, 50 packets/s each" } else { "audio out off: transport and pings only" },
        median(&mut samples),
        samples.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench discovery
    }
    // `cargo bench` adds `--bench`; only our own words count.
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    if let Some(i) = args.iter().position(|a| a == "chromium-stack") {
        chromium_inner(args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(50));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "stacks") {
        stacks(args.get(i + 1).map(String::as_str));
        return;
    }
    connect_times();
    stacks(None);
    idle_cpu(100, false);
    idle_cpu(100, true);
}
