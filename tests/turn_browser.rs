//! A browser on its own TURN relay: the official Pipecat JS client in headless Chromium,
//! behind a masquerading NAT, given coturn as its ICE server (`iceServers` with username
//! and credential), reaches the echo bot on the public side, which has plain host
//! candidates. The official transport passes only `iceServers` to its
//! `RTCPeerConnection` (no `iceTransportPolicy`), so the firewall decides: everything
//! between the client's NAT and the bot is dropped except coturn's port and the bot's
//! HTTP port (the signalling POST and PATCHes), so media can only run through the
//! client's relay. Asserts bot-ready, app messages round-trip, the tone bursts come back,
//! Chromium's selected local candidate is a relay one, the bot's selected pair leads to
//! coturn's relay address, the bot's peer is gone after the client disconnects and
//! Chromium deleted its allocation.
//! Needs root, iproute2, nftables, coturn (`.ci/setup.sh --tests`) and
//! `.ci/setup-browser.sh`.

mod common;
#[path = "browser/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::impair::FaultNet;
use common::natnet::{self, NatNet};
use serde_json::{json, Value};
use smallwebrtc::signalling::{echo, Server, ServerConfig};
use smallwebrtc::{CandidatePair, CandidateType, Runtime, RuntimeConfig, TransportProtocol};

const DRIVER_TIMEOUT_S: u64 = 60;

/// The echo bot on the public namespace's client-side address, host candidates only.
fn echo_server(net: &NatNet) -> (Server, Runtime) {
    FaultNet::run_in(&net.public, || {
        let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
        let cfg = ServerConfig {
            addr: SocketAddr::new(natnet::PUBLIC_IP2, 0),
            runtime: Some(rt.clone()),
            peer: echo::echo_peer_config(),
            ..ServerConfig::default()
        };
        let server = Server::start(cfg, Some(echo::on_peer(true))).expect("echo server starts");
        (server, rt)
    })
}

/// The last selected candidate pair the bot reports for any of its peers while `done`
/// stays silent (its stats come once a second; the peer is gone after the disconnect, so
/// this samples during the session).
fn watch_selected_pair(server: &Server, done: &mpsc::Receiver<()>) -> Option<CandidatePair> {
    let mut last = None;
    while done.recv_timeout(Duration::from_millis(100)).is_err() {
        let registry = server.registry();
        for id in registry.pc_ids() {
            let pair = registry
                .peer(&id)
                .and_then(|p| p.network_stats().ok())
                .and_then(|s| s.selected_pair);
            if pair.is_some() {
                last = pair;
            }
        }
    }
    last
}

#[test]
fn official_client_in_chromium_reaches_the_bot_through_its_turn_relay() {
    harness::check_prerequisites();
    harness::build_bundle();
    let net = NatNet::new();
    net.block_client_except_turn();
    let (server, rt) = echo_server(&net);
    net.allow_client_tcp_port(server.local_addr().port());

    let ice_servers = json!([{"urls": natnet::turn_url(), "username": natnet::TURN_USER,
                              "credential": natnet::TURN_PASSWORD}]);
    let cmd = harness::official_client_in(
        &net.client,
        &format!("http://{}", server.local_addr()),
        DRIVER_TIMEOUT_S,
        &[format!("--ice-servers={ice_servers}")],
    );
    let (done_tx, done_rx) = mpsc::channel();
    let driver = std::thread::spawn(move || {
        let out = harness::run_with_deadline(
            cmd,
            Duration::from_secs(DRIVER_TIMEOUT_S + 20),
            "official_client.mjs",
            true,
        );
        let _ = done_tx.send(());
        out
    });
    let pair = watch_selected_pair(&server, &done_rx);
    let out = driver.join().expect("driver thread").expect("node runs");
    eprintln!(
        "--- driver stderr ---\n{}\n  runtime {:?}",
        harness::tail(&out.stderr, 60),
        rt.stats()
    );
    let result: Value = harness::driver_result("official_client.mjs", &out);
    eprintln!("result: {}", harness::summary(&result));
    eprintln!(
        "Chromium on its TURN relay (UDP): POST → data channel open {} ms; Chromium's \
         selected pair {} ({}) → {}; the bot's {pair:?}",
        result["timings"]["postToDcOpenMs"],
        result["stats"]["localCandidate"],
        result["stats"]["localCandidateType"],
        result["stats"]["remoteCandidate"],
    );

    harness::assert_ok(&result);
    assert_eq!(result["messages"]["rtvi"]["ok"], true, "{result}");
    assert_eq!(result["messages"]["raw4k"]["ok"], true, "{result}");
    assert!(
        result["audio"]["goodBursts"].as_u64().unwrap_or(0) >= 5,
        "{}",
        result["audio"]
    );
    assert_eq!(
        result["stats"]["localCandidateType"], "relay",
        "Chromium's selected pair: {}",
        result["stats"]
    );
    // Our side talks to coturn's relayed address (the relay candidate trickled in by
    // PATCH, or peer-reflexive if the relay's check came first), over UDP.
    let pair = pair.expect("the bot never reported a selected candidate pair");
    assert_eq!(pair.remote_address.ip(), natnet::PUBLIC_IP, "{pair:?}");
    assert_eq!(pair.protocol, TransportProtocol::Udp, "{pair:?}");
    assert!(
        matches!(
            pair.remote_type,
            CandidateType::Relay | CandidateType::Prflx
        ),
        "{pair:?}"
    );
    // The client's disconnect closes the bot's peer.
    let end = Instant::now() + Duration::from_secs(20);
    while rt.peer_count() > 0 || !server.registry().pc_ids().is_empty() {
        assert!(
            Instant::now() < end,
            "left behind after the disconnect: {} peers, {:?}",
            rt.peer_count(),
            server.registry().pc_ids()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Chromium gave its allocation back on leaving (a Refresh with lifetime 0).
    let end = Instant::now() + Duration::from_secs(20);
    while !net.coturn_log().contains("lifetime=0") {
        assert!(
            Instant::now() < end,
            "the client's allocation was not deleted:\n{}",
            net.coturn_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();
}
