//! ICE over TCP with a real browser: the official Pipecat JS client in headless Chromium,
//! in a client network namespace whose every UDP packet toward the server is dropped by an
//! nftables rule in the routing namespace between them. The echo server offers its UDP
//! candidate and a passive TCP one (`RuntimeConfig::tcp_addr`); Chromium's UDP checks die
//! in the firewall (counted), so the session can only come up over TCP. Asserts that it
//! connects (bot-ready), app messages round-trip, the tone bursts come back, Chromium's
//! selected pair is TCP, and the server's connection is gone once the client disconnects.
//! Needs `.ci/setup-browser.sh`, nftables and root (network namespaces).

mod common;
#[path = "browser/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::impair::{FaultNet, SERVER_IP};
use smallwebrtc::signalling::{echo, Server, ServerConfig};
use smallwebrtc::{PeerConfig, Runtime, RuntimeConfig};

const DRIVER_TIMEOUT_S: u64 = 90;
const TCP_PORT: u16 = 40_443;

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run {program} (is it installed? .ci/setup.sh --tests): {e}")
    });
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lets the middle namespace route between client and server.
fn route(net: &FaultNet) {
    run(
        "ip",
        &[
            "netns",
            "exec",
            &net.relay_ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ],
        None,
    );
    run(
        "ip",
        &[
            "-n",
            &net.client_ns,
            "route",
            "add",
            "default",
            "via",
            "10.0.1.1",
        ],
        None,
    );
    run(
        "ip",
        &[
            "-n",
            &net.server_ns,
            "route",
            "add",
            "default",
            "via",
            "10.0.2.1",
        ],
        None,
    );
}

/// Drops every UDP packet the middle namespace would forward (counted).
fn block_udp(net: &FaultNet) {
    let rules = "table inet icetcp {\n\
                   chain forward {\n\
                     type filter hook forward priority 0; policy accept;\n\
                     meta l4proto udp counter drop\n\
                   }\n\
                 }\n";
    run(
        "ip",
        &["netns", "exec", &net.relay_ns, "nft", "-f", "-"],
        Some(rules),
    );
}

/// UDP packets the firewall dropped so far.
fn udp_dropped(net: &FaultNet) -> u64 {
    let out = run(
        "ip",
        &[
            "netns",
            "exec",
            &net.relay_ns,
            "nft",
            "list",
            "chain",
            "inet",
            "icetcp",
            "forward",
        ],
        None,
    );
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn official_client_in_chromium_connects_over_ice_tcp_when_udp_is_blocked() {
    harness::check_prerequisites();
    harness::build_bundle();
    let net = FaultNet::new();
    route(&net);
    block_udp(&net);
    let (server, rt) = start_server(&net);

    let url = format!("http://{}", server.local_addr());
    let cmd = harness::official_client_in(&net.client_ns, &url, DRIVER_TIMEOUT_S, &[]);
    let out = harness::run_with_deadline(
        cmd,
        Duration::from_secs(DRIVER_TIMEOUT_S + 20),
        "official_client.mjs",
        true,
    )
    .expect("node runs");
    let stats = rt.stats();
    let dropped = udp_dropped(&net);
    eprintln!(
        "--- driver stderr ---\n{}\n  runtime {stats:?}\n  UDP dropped by the firewall: {dropped}",
        harness::tail(&out.stderr, 60)
    );
    let result = harness::driver_result("official_client.mjs", &out);
    eprintln!("result: {}", harness::summary(&result));

    harness::assert_ok(&result);
    assert_eq!(result["messages"]["rtvi"]["ok"], true, "{result}");
    assert_eq!(result["messages"]["raw4k"]["ok"], true, "{result}");
    assert!(
        result["audio"]["goodBursts"].as_u64().unwrap_or(0) >= 5,
        "{}",
        result["audio"]
    );
    assert_eq!(
        result["stats"]["remoteCandidateProtocol"], "tcp",
        "Chromium's selected pair: {}",
        result["stats"]
    );
    // Chromium did try UDP (the firewall counted it), and the session ran on TCP.
    assert!(dropped > 0, "no UDP was even tried: {stats:?}");
    assert!(
        stats.tcp_frames_in > 100 && stats.tcp_frames_out > 100,
        "{stats:?}"
    );
    // The client's disconnect closes the peer, and the peer its connection.
    let end = Instant::now() + Duration::from_secs(30);
    while rt.stats().tcp_connections > 0 || rt.peer_count() > 0 {
        assert!(
            Instant::now() < end,
            "left behind after the disconnect: {:?}, {} peers",
            rt.stats(),
            rt.peer_count()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
}

/// The echo server in the server namespace, with ICE-TCP on `TCP_PORT`.
fn start_server(net: &FaultNet) -> (Server, Runtime) {
    FaultNet::run_in(&net.server_ns, || {
        let rt = Runtime::new(RuntimeConfig {
            tcp_addr: Some(SocketAddr::new(SERVER_IP, TCP_PORT)),
            ..RuntimeConfig::default()
        })
        .expect("runtime with ICE-TCP");
        let cfg = ServerConfig {
            addr: SocketAddr::new(SERVER_IP, 0),
            runtime: Some(rt.clone()),
            peer: PeerConfig {
                bind_ip: Some(SERVER_IP),
                ..echo::echo_peer_config()
            },
            ..ServerConfig::default()
        };
        let server = Server::start(cfg, Some(echo::on_peer(true))).expect("echo server starts");
        (server, rt)
    })
}

/// POST → data channel open of `n` sequential connects of the official client in
/// Chromium (after one warm-up), in ms.
fn connect_times(net: &FaultNet, server: &Server, n: usize) -> Vec<f64> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &net.client_ns, "node"])
        .arg(harness::browser_dir().join("connect_times.mjs"))
        .arg(format!("http://{}", server.local_addr()))
        .arg(n.to_string())
        .args(["--timeout", "300"])
        .current_dir(harness::browser_dir())
        .env("SWRTC_DRIVER_WATCH_STDIN", "1");
    let out = harness::run_with_deadline(cmd, Duration::from_secs(320), "connect_times.mjs", true)
        .expect("node runs");
    let v = harness::driver_result("connect_times.mjs", &out);
    assert_eq!(v["ok"], true, "{v}");
    v["times"]
        .as_array()
        .expect("times")
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A measurement, not a test (no target): POST → data channel open in Chromium over the
/// routed namespaces, UDP host first, then with UDP dropped (ICE-TCP), median of 20 each.
/// `cargo test --test ice_tcp_browser -- --ignored --nocapture`.
#[test]
#[ignore]
fn connect_times_over_udp_and_ice_tcp() {
    harness::check_prerequisites();
    harness::build_bundle();
    let net = FaultNet::new();
    route(&net);
    let (server, rt) = start_server(&net);
    let udp = connect_times(&net, &server, 20);
    let before = rt.stats().tcp_frames_in;
    block_udp(&net);
    let tcp = connect_times(&net, &server, 20);
    let s = rt.stats();
    eprintln!("UDP host: median {:.1} ms of {udp:?}", median(udp.clone()));
    eprintln!("ICE-TCP:  median {:.1} ms of {tcp:?}", median(tcp.clone()));
    eprintln!("TCP frames in before the UDP block: {before}; runtime {s:?}");
    assert!(udp_dropped(&net) > 0 && s.tcp_frames_in > before, "{s:?}");
    server.stop();
}
