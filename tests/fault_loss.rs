//! Fault suite: aiortc against the echo (as the echo example runs it) through an impaired
//! path between namespaces.
//!
//! - Loss on the client's uplink (5 % and 20 %): what the server does with a lossy mic.
//!   The echo's round trip stays within a bound of a clean run's in the same test (no
//!   standing delay from concealment), and does not grow over the run (no drift).
//! - Loss both ways, and 40 ± 20 ms of delay with reordering both ways: continuity. The
//!   bursts keep coming back and messages all arrive in order. The round trip is not held
//!   to a bound here: aiortc's own receive buffer waits for a lost packet until 16 newer
//!   ones are queued, so downlink loss adds up to ~320 ms on the client side.
//!
//! In every case the peer never counts the live client as gone.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::faults::{expect_messages_back_in_order, round_trips, serve};
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

/// Runs the echo through `imp` up and `down` down; `min_back` is the fraction of tone
/// bursts that must come back. Returns the round trips (ms) of the bursts that did.
fn echo_through(imp: Impairment, down: Impairment, min_back: f64) -> Vec<f64> {
    // One impaired session at a time: three aiortc clients with their relays at once on a
    // 2-core machine starved each other (a client silent for seconds is "gone" by design).
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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
    expect_messages_back_in_order(&mut client, sent_msgs, T);
    let (rtts, sent) = round_trips(&lat);
    let (up, dn) = (path.relay.counters(Dir::Up), path.relay.counters(Dir::Down));
    eprintln!("{imp:?}\n  {sent_msgs} messages; latency {lat}\n  up {up:?}\n  down {dn:?}");

    // The impairment really happened, both ways.
    if imp.loss_percent > 0.0 {
        assert!(up.dropped_loss > 0, "{up:?}");
    }
    if down.loss_percent > 0.0 {
        assert!(dn.dropped_loss > 0, "{dn:?}");
    }
    if imp.reorder {
        assert!(up.reordered > 0, "{up:?}");
    }
    if down.reorder {
        assert!(dn.reordered > 0, "{dn:?}");
    }
    assert!(sent >= 15, "{lat}");
    assert!(
        rtts.len() as f64 >= sent as f64 * min_back,
        "{} of {sent} bursts came back: {lat}",
        rtts.len()
    );
    assert!(median(&rtts) < 600.0, "{lat}");
    assert_eq!(peer.state(), PeerState::Connected);
    client.close();
    rtts
}

/// The clean round trip of this machine, now: the baseline for the loss runs.
fn clean_rtt() -> f64 {
    static CLEAN: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *CLEAN.get_or_init(|| {
        let rtts = echo_through(Impairment::default(), Impairment::default(), 0.9);
        let m = median(&rtts);
        eprintln!("clean round trip: median {m} ms of {}", rtts.len());
        m
    })
}

/// Uplink loss: the echo's round trip stays near the clean one, and does not grow.
fn uplink_loss(percent: f64, min_back: f64) {
    let clean = clean_rtt();
    let rtts = echo_through(Impairment::loss(percent), Impairment::default(), min_back);
    let m = median(&rtts);
    eprintln!("{percent} % uplink loss: median {m} ms against {clean} ms clean");
    // A lost mic frame is concealed at its deadline: at most the reorder wait plus a
    // frame or two of output, never a standing queue.
    assert!(
        m <= clean + 60.0,
        "{percent} % uplink loss: round trip {m} ms against {clean} ms clean: {rtts:?}"
    );
    // No drift: the last third comes back as fast as the first.
    let n = rtts.len() / 3;
    let (first, last) = (median(&rtts[..n]), median(&rtts[rtts.len() - n..]));
    assert!(
        last <= first + 40.0,
        "round trip grew from {first} to {last} ms: {rtts:?}"
    );
}

#[test]
fn echo_holds_under_5_percent_uplink_loss() {
    uplink_loss(5.0, 0.7);
}

#[test]
fn echo_holds_under_20_percent_uplink_loss() {
    // Each 60 ms burst is three packets, so a fifth of the mic lost spoils many bursts'
    // onsets; the bar catches audio that stops.
    uplink_loss(20.0, 0.3);
}

#[test]
fn echo_holds_under_10_percent_loss_both_ways() {
    let up = Impairment::loss(10.0);
    let down = Impairment {
        seed: up.seed ^ 0xd0d0,
        ..up
    };
    echo_through(up, down, 0.3);
}

#[test]
fn echo_holds_under_40_ms_jitter_with_reordering() {
    let up = Impairment {
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(20),
        reorder: true,
        ..Impairment::default()
    };
    let down = Impairment {
        seed: up.seed ^ 0xd0d0,
        ..up
    };
    echo_through(up, down, 0.85);
}
