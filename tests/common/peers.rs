//! Small shared steps of the end-to-end tests: a loopback peer config and connecting a
//! str0m test client to a peer.

use std::time::{Duration, Instant};

use smallwebrtc::{Peer, PeerConfig, PeerState};

use super::str0m_client::{ClientEvent, TestClient};

/// The default config bound to 127.0.0.1, so test traffic stays on loopback.
pub fn loopback() -> PeerConfig {
    PeerConfig {
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        ..PeerConfig::default()
    }
}

/// Offer → answer between `client` and `peer`, wait up to `within` for the client's data
/// channel to open, then `peer.connect()`.
pub fn open_str0m(client: &mut TestClient, peer: &Peer, within: Duration) {
    let offer = client.offer();
    client
        .accept_answer(&peer.handle_offer(&offer).unwrap())
        .unwrap();
    assert!(
        client
            .wait_for(within, |e| matches!(e, ClientEvent::ChannelOpen(_)))
            .is_some(),
        "the data channel never opened"
    );
    peer.connect().unwrap();
}

/// Waits up to `within` for `peer` to report `Connected`, draining its event queue.
#[allow(dead_code)] // not every test binary uses it
pub fn wait_connected(peer: &Peer, within: Duration) {
    let end = Instant::now() + within;
    while peer.state() != PeerState::Connected {
        assert!(Instant::now() < end, "never connected");
        let _ = peer.poll_event(Some(Duration::from_millis(20)));
    }
}
