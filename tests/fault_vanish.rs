//! Fault suite: clients that vanish without a word (the relay between the namespaces
//! starts dropping everything) are reported disconnected within 5 s, pinging or not, and
//! the peer then fails and closes on its own.

mod common;

use std::time::{Duration, Instant};

use common::faults::{serve, wait_state};
use common::impair::Impairment;
use common::peers::{open_str0m, wait_connected};
use common::str0m_client::ClientOptions;
use serde_json::json;
use smallwebrtc::{PeerConfig, PeerState};

const T: Duration = Duration::from_secs(20);
/// The target: a vanished client is reported within this.
const NOTICE: Duration = Duration::from_secs(5);

fn cfg() -> PeerConfig {
    PeerConfig::default()
}

/// Connects, stays connected `settle` (longer than every liveness window, so the client
/// is shown to be kept alive by whatever it sends), cuts the path, and returns how long
/// the peer took to report `Disconnected`.
fn vanish_after(path: &common::faults::Path, settle: Duration) -> Duration {
    let end = Instant::now() + settle;
    while Instant::now() < end {
        assert_eq!(
            path.peer.state(),
            PeerState::Connected,
            "a live client was reported gone"
        );
        let _ = path.peer.poll_event(Some(Duration::from_millis(50)));
    }
    path.relay.set_blackout(true);
    let cut = Instant::now();
    let at = wait_state(&path.peer, PeerState::Disconnected, T).expect("never disconnected");
    at - cut
}

#[test]
fn a_pinging_str0m_client_that_vanishes_is_disconnected_within_5_s() {
    let path = serve(cfg(), Impairment::default(), Impairment::default());
    let mut client = path.str0m_client(ClientOptions::default());
    open_str0m(&mut client, &path.peer, T);
    wait_connected(&path.peer, T);
    let took = vanish_after(&path, Duration::from_secs(6));
    assert!(took <= NOTICE, "disconnected after {took:?}");
}

/// The ESP32 shape: no pings, and here nothing else either (no media, no messages), so
/// only our consent checks tell a live client from a vanished one.
#[test]
fn a_silent_str0m_client_that_vanishes_is_disconnected_within_5_s_then_closed() {
    let path = serve(cfg(), Impairment::default(), Impairment::default());
    let mut client = path.str0m_client(ClientOptions {
        pings: false,
        ..ClientOptions::default()
    });
    open_str0m(&mut client, &path.peer, T);
    wait_connected(&path.peer, T);
    let took = vanish_after(&path, Duration::from_secs(6));
    assert!(took <= NOTICE, "disconnected after {took:?}");
    // Then the disconnected timeout (30 s) fails and closes it on its own.
    assert!(
        wait_state(&path.peer, PeerState::Closed, Duration::from_secs(45)).is_some(),
        "a vanished client's peer was never closed (state {:?})",
        path.peer.state()
    );
}

/// aiortc does not ping here but sends audio and video; it vanishes the same way.
#[test]
fn a_non_pinging_aiortc_client_that_vanishes_is_disconnected_within_5_s() {
    let path = serve(
        PeerConfig {
            video_in_enabled: true,
            ..cfg()
        },
        Impairment::default(),
        Impairment::default(),
    );
    let mut client = path.aiortc_client();
    path.connect_aiortc(
        &mut client,
        json!({"audio": true, "video": true, "pings": false}),
        T,
    );
    let took = vanish_after(&path, Duration::from_secs(5));
    assert!(took <= NOTICE, "disconnected after {took:?}");
    client.close();
}
