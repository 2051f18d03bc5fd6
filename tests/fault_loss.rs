//! Fault suite: aiortc against the echo (as the echo example runs it) through an impaired
//! path between namespaces: 5 % and 20 % random loss, and 40 ± 20 ms of delay with
//! reordering, both ways. Continuity, not wall-clock exactness: the tone bursts keep
//! coming back, their round trip does not grow (no standing delay, no drift), messages
//! all arrive in order, and the peer never counts the live client as gone.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::faults::serve;
use common::impair::{Dir, Impairment};
use serde_json::json;
use smallwebrtc::PeerState;

const T: Duration = Duration::from_secs(30);
const RUN: Duration = Duration::from_secs(12);

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the echo through `imp` (both directions); `min_back` is the fraction of tone
/// bursts that must come back.
fn echo_through(imp: Impairment, min_back: f64) {
    // One impaired session at a time: three aiortc clients with their relays at once on a
    // 2-core machine starved each other (a client silent for seconds is "gone" by design).
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let down = Impairment {
        seed: imp.seed ^ 0xd0d0,
        ..imp
    };
    let path = serve(smallwebrtc::signalling::echo::echo_peer_config(), imp, down);
    let peer = path.peer.clone();
    let mut client = path.aiortc_client();
    let offer = client.offer(json!({
        "audio": true, "video": false,
        "host_addresses": [common::impair::CLIENT_IP.to_string()],
        "bursts": {"hz": 1000, "dbfs": -20, "burst_ms": 60, "period_ms": 500},
    }));
    client.answer(&peer.handle_offer(&offer).unwrap());
    smallwebrtc::signalling::echo::start(peer.clone(), "fault", false);
    client.wait_channel_open(T);

    // Messages while the audio runs; all must come back, in order.
    let end = Instant::now() + RUN;
    let mut sent_msgs = 0;
    while Instant::now() < end {
        assert_ne!(
            peer.state(),
            PeerState::Disconnected,
            "a live client counted as gone"
        );
        client.send_text(&format!("msg-{sent_msgs:03}-end"));
        sent_msgs += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let lat = client.latency(false);
    for i in 0..sent_msgs {
        let text = format!("msg-{i:03}-end");
        let back = client.wait_message(T, |m| m.contains("msg-"));
        assert!(
            back.contains(&text),
            "expected {text} back next, got {back}"
        );
    }
    let rtts: Vec<f64> = lat["rtts_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    let sent = lat["bursts_sent"].as_u64().unwrap_or(0);
    let (up, dn) = (path.relay.counters(Dir::Up), path.relay.counters(Dir::Down));
    eprintln!("{imp:?}\n  {sent_msgs} messages; latency {lat}\n  up {up:?}\n  down {dn:?}");

    // The impairment really happened, both ways.
    if imp.loss_percent > 0.0 {
        assert!(up.dropped_loss > 0 && dn.dropped_loss > 0, "{up:?} {dn:?}");
    } else {
        assert!(up.reordered > 0 && dn.reordered > 0, "{up:?} {dn:?}");
    }
    assert!(sent >= 15, "{lat}");
    assert!(
        rtts.len() as f64 >= sent as f64 * min_back,
        "{} of {sent} bursts came back: {lat}",
        rtts.len()
    );
    // No standing delay or drift: the last bursts come back as fast as the first.
    let n = rtts.len() / 3;
    let (first, last) = (median(&rtts[..n]), median(&rtts[rtts.len() - n..]));
    assert!(
        last <= first + 40.0,
        "round trip grew from {first} to {last} ms: {lat}"
    );
    assert!(median(&rtts) < 500.0, "{lat}");
    assert_eq!(peer.state(), PeerState::Connected);
    client.close();
}

#[test]
fn echo_holds_under_5_percent_loss() {
    echo_through(Impairment::loss(5.0), 0.7);
}

#[test]
fn echo_holds_under_20_percent_loss() {
    // Today 35–45 % of the bursts come back intact through 20 % loss both ways
    // (each 60 ms burst is three packets, and both the mic and the echo lose); the bar
    // catches audio that stops, and rises as the concealment improves.
    echo_through(Impairment::loss(20.0), 0.15);
}

#[test]
fn echo_holds_under_40_ms_jitter_with_reordering() {
    echo_through(
        Impairment {
            delay: Duration::from_millis(40),
            jitter: Duration::from_millis(20),
            reorder: true,
            ..Impairment::default()
        },
        0.85,
    );
}
