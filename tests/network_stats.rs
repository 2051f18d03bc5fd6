//! Network stats over real sessions on loopback: RTT, jitter, loss, bitrate, bytes and
//! the selected candidate pair, with the str0m test client (host and peer-reflexive
//! pairs, injected loss) and with aiortc; the JSON report against the struct.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use common::peers::{loopback, open_str0m};
use common::str0m_client::{ClientEvent, ClientOptions, TestClient};
use serde_json::{json, Value};
use smallwebrtc::media::audio::OpusEncoder;
use smallwebrtc::signalling::{routes, Registry, Request, ServerConfig};
use smallwebrtc::{CandidateType, NetworkStats, Peer, TransportProtocol};

const T: Duration = Duration::from_secs(20);

/// Sends a 20 ms Opus tone packet from `client` every 20 ms until `stop`.
fn send_tone(client: Arc<TestClient>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut enc = OpusEncoder::new(48_000, 1, 32_000, 5, true).unwrap();
        let mut out = vec![0u8; 4000];
        let start = Instant::now();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let pcm = common::str0m_client::tone(440.0, i * 960, 960, 48_000);
            let n = enc.encode(&pcm, &mut out).unwrap();
            client.send_opus(out[..n].to_vec(), i * 960);
            i += 1;
            let due = start + Duration::from_millis(20 * i);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    })
}

/// Polls the peer's network stats until `done` holds; panics with the last stats after
/// `within`.
fn wait_stats(peer: &Peer, within: Duration, done: impl Fn(&NetworkStats) -> bool) -> NetworkStats {
    let end = Instant::now() + within;
    loop {
        let s = peer.network_stats().unwrap();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < end, "stats never got there: {s:#?}");
        let _ = peer.poll_event(Some(Duration::from_millis(100)));
    }
}

fn plausible_rtt(s: &NetworkStats) -> bool {
    // Loopback: well under a millisecond when idle; a busy 2-core machine may hold a
    // check up, but never for a second.
    s.rtt_ms.is_some_and(|r| r > 0.0 && r < 1000.0)
}

#[test]
fn str0m_session_measures_rtt_jitter_bitrate_and_host_pair() {
    let peer = Peer::new(loopback(), None).unwrap();
    let mut client = TestClient::new(ClientOptions::default());
    open_str0m(&mut client, &peer, T);
    let client = Arc::new(client);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_tone(client.clone(), stop.clone());

    let first = wait_stats(&peer, T, |s| {
        s.reports >= 2 && s.packets_in > 0 && s.packets_out > 0 && s.jitter_in_ms.is_some()
    });
    assert!(plausible_rtt(&first), "rtt: {first:#?}");
    let jitter = first.jitter_in_ms.unwrap();
    // 20 ms packets paced by a sleeping thread: jitter of a few ms at most.
    assert!((0.0..200.0).contains(&jitter), "jitter in: {jitter}");
    let pair = first.selected_pair.clone().expect("a selected pair");
    assert_eq!(pair.local_type, CandidateType::Host);
    assert_eq!(pair.remote_type, CandidateType::Host);
    assert_eq!(pair.protocol, TransportProtocol::Udp);
    assert_eq!(pair.remote_address, client.local_addr());
    assert!(peer.local_addrs().contains(&pair.local_address), "{pair:?}");

    // Two more reports later everything counted has grown; the bitrates are those of a
    // 32 kbit/s Opus stream each way (we send silence, which is much smaller) plus RTCP.
    let reports = first.reports;
    let later = wait_stats(&peer, T, |s| s.reports >= reports + 2);
    assert!(later.bytes_in > first.bytes_in && later.bytes_out > first.bytes_out);
    assert!(later.packets_in > first.packets_in && later.packets_out > first.packets_out);
    assert!(
        (5_000..500_000).contains(&later.bitrate_in_bps),
        "bitrate in: {}",
        later.bitrate_in_bps
    );
    assert!(later.bitrate_out_bps > 0 && later.bitrate_out_bps < 500_000);
    assert!(plausible_rtt(&later));
    // The client's receiver reports about our audio.
    let out = wait_stats(&peer, T, |s| {
        s.jitter_out_ms.is_some() && s.loss_out.is_some()
    });
    assert!(
        out.loss_out.unwrap() <= 0.01,
        "loss out: {:?}",
        out.loss_out
    );

    // A third of the client's packets lost on the way: the loss shows.
    client.set_loss_percent(33.0);
    let lossy = wait_stats(&peer, T, |s| s.loss_in.is_some_and(|l| l > 0.1));
    assert!(lossy.loss_in.unwrap() < 0.7, "loss in: {:?}", lossy.loss_in);
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
}

#[test]
fn offer_without_candidates_selects_a_peer_reflexive_pair() {
    let peer = Peer::new(loopback(), None).unwrap();
    let mut client = TestClient::new(ClientOptions::default());
    let offer: String = client
        .offer()
        .lines()
        .filter(|l| !l.starts_with("a=candidate"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    client
        .accept_answer(&peer.handle_offer(&offer).unwrap())
        .unwrap();
    assert!(client
        .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
        .is_some());
    let s = wait_stats(&peer, T, |s| s.selected_pair.is_some());
    let pair = s.selected_pair.unwrap();
    assert_eq!(pair.remote_type, CandidateType::Prflx);
    assert_eq!(pair.local_type, CandidateType::Host);
    assert_eq!(pair.remote_address, client.local_addr());
}

#[test]
fn json_report_parses_and_matches_the_struct() {
    let peer = Peer::new(loopback(), None).unwrap();
    let mut client = TestClient::new(ClientOptions::default());
    open_str0m(&mut client, &peer, T);
    wait_stats(&peer, T, |s| {
        s.selected_pair.is_some() && s.rtt_ms.is_some()
    });

    let report = peer.report().unwrap();
    let parsed: Value = serde_json::from_str(&peer.stats_json().unwrap()).unwrap();
    let from_struct = serde_json::to_value(&report).unwrap();
    // Same shape: every key of the struct's serialisation, at every level.
    fn same_keys(a: &Value, b: &Value, at: &str) {
        if let (Value::Object(a), Value::Object(b)) = (a, b) {
            let ka: Vec<_> = a.keys().collect();
            let kb: Vec<_> = b.keys().collect();
            assert_eq!(ka, kb, "keys at {at}");
            for (k, v) in a {
                same_keys(v, &b[k], &format!("{at}.{k}"));
            }
        }
    }
    same_keys(&from_struct, &parsed, "");
    // Values that do not move between the two calls are equal; counters only grow.
    assert_eq!(parsed["state"], json!("connected"));
    let n = &parsed["network"];
    assert_eq!(
        n["selected_pair"],
        serde_json::to_value(&report.network.selected_pair).unwrap()
    );
    assert_eq!(n["selected_pair"]["local_type"], json!("host"));
    assert_eq!(n["selected_pair"]["protocol"], json!("udp"));
    assert_eq!(
        n["selected_pair"]["remote_address"],
        json!(client.local_addr().to_string())
    );
    assert!(n["bytes_out"].as_u64().unwrap() >= report.network.bytes_out);
    assert!(n["reports"].as_u64().unwrap() >= report.network.reports);
    assert!(n["rtt_ms"].as_f64().unwrap() > 0.0);
    assert!(parsed["session"]["datagrams_in"].as_u64().unwrap() >= report.session.datagrams_in);
    assert_eq!(parsed["video"]["in_frames_decoded"], json!([0, 0]));

    // Closed: a clear error, not stale numbers.
    peer.close().unwrap();
    let end = Instant::now() + T;
    while peer.stats_json().is_ok() {
        assert!(Instant::now() < end, "stats of a closed peer");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn aiortc_session_measures_both_ways() {
    let mut client = AiortcPeer::spawn();
    let peer = Peer::new(loopback(), None).unwrap();
    let offer = client.offer(json!({"audio": true, "video": false, "tone_hz": 440}));
    client.answer(&peer.handle_offer(&offer).unwrap());
    client.wait_channel_open(T);
    peer.connect().unwrap();
    // aiortc sends its tone and reports on our audio (RTCP receiver reports every ~1 s).
    let s = wait_stats(&peer, T, |s| {
        s.reports >= 3
            && s.packets_in > 50
            && s.jitter_in_ms.is_some()
            && s.jitter_out_ms.is_some()
            && s.bitrate_in_bps > 0
    });
    assert!(plausible_rtt(&s), "{s:#?}");
    assert!((0.0..200.0).contains(&s.jitter_in_ms.unwrap()));
    assert!((0.0..200.0).contains(&s.jitter_out_ms.unwrap()));
    assert!(s.bitrate_out_bps > 0 && s.bytes_in > 0 && s.bytes_out > 0);
    let pair = s.selected_pair.expect("a selected pair");
    assert_eq!(pair.local_type, CandidateType::Host);
    assert_eq!(pair.remote_type, CandidateType::Host);
    assert_eq!(pair.protocol, TransportProtocol::Udp);
    assert!(pair.remote_address.ip().is_loopback(), "{pair:?}");
    assert!(client.close());
}

#[test]
fn stats_route_serves_the_report_and_clear_errors() {
    let reg = Registry::new(
        ServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            peer: loopback(),
            ..ServerConfig::default()
        },
        None,
    )
    .unwrap();
    let get = |path: &str| routes::handle(&Request::new("GET", path, Vec::new()), &reg);
    assert_eq!(get("/api/stats").status, 400);
    assert_eq!(get("/api/stats?pc_id=").status, 400);
    assert_eq!(get("/api/stats?pc_id=nobody").status, 404);
    let post = routes::handle(&Request::new("POST", "/api/stats?pc_id=x", "{}"), &reg);
    assert_eq!(post.status, 405);

    let mut client = TestClient::new(ClientOptions::default());
    let body = json!({"sdp": client.offer(), "type": "offer"}).to_string();
    let r = routes::handle(&Request::new("POST", "/api/offer", body), &reg);
    assert_eq!(r.status, 200);
    let answer = r.body_json();
    client
        .accept_answer(answer["sdp"].as_str().unwrap())
        .unwrap();
    let pc_id = answer["pc_id"].as_str().unwrap().to_owned();
    let end = Instant::now() + T;
    let report = loop {
        let r = get(&format!("/api/stats?pc_id={pc_id}"));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let v = r.body_json();
        if !v["network"]["selected_pair"].is_null() {
            break v;
        }
        assert!(Instant::now() < end, "no pair in {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        report["network"]["selected_pair"]["remote_type"],
        json!("host")
    );
    assert_eq!(
        report["network"]["selected_pair"]["remote_address"],
        json!(client.local_addr().to_string())
    );
}
