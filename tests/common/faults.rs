//! Steps shared by the fault suite: a server peer in the server namespace that clients in
//! the client namespace reach only through an impairment relay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use smallwebrtc::{Peer, PeerConfig, PeerEvent, PeerState};

use super::aiortc::AiortcPeer;
use super::impair::{FaultNet, Impairment, Relay, CLIENT_IP, RELAY_CLIENT_IP, SERVER_IP};
use super::str0m_client::{ClientOptions, TestClient};

/// A peer behind a relay. Fields drop in order: the peer, then the relay, then the
/// namespaces.
pub struct Path {
    pub peer: Arc<Peer>,
    pub relay: Relay,
    pub net: FaultNet,
}

/// Creates `cfg`'s peer in the server namespace, advertising the relay's address, with a
/// relay impairing client → server by `up` and server → client by `down`.
pub fn serve(cfg: PeerConfig, up: Impairment, down: Impairment) -> Path {
    let net = FaultNet::new();
    let cfg = PeerConfig {
        bind_ip: Some(SERVER_IP),
        public_ip: Some(RELAY_CLIENT_IP),
        ..cfg
    };
    let peer = FaultNet::run_in(&net.server_ns, move || Peer::new(cfg, None).expect("peer"));
    let server = *peer.local_addrs().first().expect("a bound socket");
    let relay = net.relay(server.port(), server, up, down);
    Path {
        peer: Arc::new(peer),
        relay,
        net,
    }
}

impl Path {
    /// A str0m test client in the client namespace.
    pub fn str0m_client(&self, opts: ClientOptions) -> TestClient {
        let opts = ClientOptions {
            bind_ip: CLIENT_IP,
            ..opts
        };
        FaultNet::run_in(&self.net.client_ns, move || TestClient::new(opts))
    }

    /// An aiortc peer in the client namespace; pass [`Path::aiortc_offer`]'s options.
    pub fn aiortc_client(&self) -> AiortcPeer {
        AiortcPeer::spawn_in_netns(&self.net.client_ns)
    }

    /// Offer → answer with an aiortc client (`opts` as its `offer` command takes, host
    /// address set to the client namespace's), channel open, `connect`.
    pub fn connect_aiortc(&self, client: &mut AiortcPeer, mut opts: Value, within: Duration) {
        opts["host_addresses"] = serde_json::json!([CLIENT_IP.to_string()]);
        let offer = client.offer(opts);
        client.answer(&self.peer.handle_offer(&offer).expect("answer"));
        client.wait_channel_open(within);
        self.peer.connect().unwrap();
        super::peers::wait_connected(&self.peer, within);
    }
}

/// Waits up to `within` for `peer` to report `state`; returns when it did.
pub fn wait_state(peer: &Peer, state: PeerState, within: Duration) -> Option<Instant> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Some(PeerEvent::State(s)) = peer.poll_event(Some(Duration::from_millis(10))) {
            if s == state {
                return Some(Instant::now());
            }
        }
        if peer.state() == state {
            return Some(Instant::now());
        }
    }
    None
}

/// Waits for the `n` messages `msg-000-end`, `msg-001-end`, … the client sent to come back
/// from the echo, in order.
pub fn expect_messages_back_in_order(client: &mut AiortcPeer, n: usize, within: Duration) {
    for i in 0..n {
        let text = format!("msg-{i:03}-end");
        let back = client.wait_message(within, |m| m.contains("msg-"));
        assert!(
            back.contains(&text),
            "expected {text} back next, got {back}"
        );
    }
}

/// The round trips (ms) and bursts sent of an aiortc `latency` report.
pub fn round_trips(lat: &Value) -> (Vec<f64>, u64) {
    let rtts = lat["rtts_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    (rtts, lat["bursts_sent"].as_u64().unwrap_or(0))
}
