//! Reachability through real masquerading NATs (nftables) with a real STUN server
//! (coturn), aiortc as the client and the echo bot behind the real HTTP server (see
//! `common::natnet` for the network):
//! - the bot behind a NAT with no public address configured, STUN pointing at coturn: its
//!   answer carries a srflx candidate on the NAT's public address, and a client behind a
//!   NAT of its own connects through it (audio echo, app messages both ways, disconnect);
//!   aiortc on the public side connects too;
//! - the same bot without STUN cannot be reached (it advertises only its private address):
//!   the negative control that shows the first test can fail;
//! - with one shared UDP port the bot learns its public address at start, before any offer;
//! - a client behind a NAT (aiortc as it ships: no STUN, private host candidates only)
//!   reaches a bot on a public address;
//! - with direct UDP between the two NATs dropped by a firewall, the session runs through
//!   the bot's TURN relay on coturn (relay candidate in the answer, channel bindings), and
//!   the allocation is deleted when the peer closes.
//!
//! Needs root, iproute2, nftables and coturn (`.ci/setup.sh --tests`) and the aiortc venv.
//! Prints POST → data channel open for the host, srflx and relay paths.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use common::impair::FaultNet;
use common::natnet::{self, NatNet};
use common::offer::post_offer;
use serde_json::{json, Value};
use smallwebrtc::signalling::{echo, IceServer, Server, ServerConfig};
use smallwebrtc::{CandidateType, PeerState, Runtime, RuntimeConfig};

const T: Duration = Duration::from_secs(20);

/// The echo bot listening on `ip` inside `ns` (its peers bind there too), with these
/// STUN servers (the server's own runtime uses them), or on `runtime`.
fn echo_server(ns: &str, ip: IpAddr, ice: &[String], runtime: Option<Runtime>) -> Server {
    let ice_servers = if ice.is_empty() {
        vec![]
    } else {
        vec![IceServer {
            urls: ice.to_vec(),
            ..IceServer::default()
        }]
    };
    echo_server_with(ns, ip, ice_servers, runtime)
}

fn echo_server_with(
    ns: &str,
    ip: IpAddr,
    ice_servers: Vec<IceServer>,
    runtime: Option<Runtime>,
) -> Server {
    let cfg = ServerConfig {
        addr: SocketAddr::new(ip, 0),
        peer: echo::echo_peer_config(),
        ice_servers,
        runtime,
        ..ServerConfig::default()
    };
    FaultNet::run_in(ns, move || {
        Server::start(cfg, Some(echo::on_peer(true))).expect("server starts")
    })
}

/// The client's offer, POSTed from inside the server's namespace (the HTTP port is not
/// what is under test); the answer and how long the POST took.
fn post(ns: &str, server: &Server, offer: &str) -> (Value, Duration) {
    let addr = server.local_addr();
    let offer = offer.to_owned();
    FaultNet::run_in(ns, move || {
        let t0 = Instant::now();
        let a = post_offer(addr, &offer);
        (a, t0.elapsed())
    })
}

/// The `a=candidate` lines of an SDP.
fn candidates(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .map(str::to_owned)
        .collect()
}

/// The srflx candidates' addresses (ip, port) of an SDP.
fn srflx(sdp: &str) -> Vec<(IpAddr, u16)> {
    of_type(sdp, "srflx")
}

/// The addresses (ip, port) of an SDP's candidates of one type.
fn of_type(sdp: &str, typ: &str) -> Vec<(IpAddr, u16)> {
    let typ = format!(" typ {typ}");
    candidates(sdp)
        .iter()
        .filter(|c| c.contains(&typ))
        .filter_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            Some((f.get(4)?.parse().ok()?, f.get(5)?.parse().ok()?))
        })
        .collect()
}

fn offer_opts(host: IpAddr, ice: &[String]) -> Value {
    json!({"audio": true, "video": false, "tone_hz": 440, "host_addresses": [host.to_string()],
           "ice_servers": ice})
}

/// Once the channel is open: an app message comes back echoed, the client hears its tone
/// come back; then the client leaves and the bot sees it.
fn assert_session(client: &mut AiortcPeer, server: &Server, pc_id: &str) {
    client.send_text(r#"{"hello":"through the NAT"}"#);
    let want = json!({"echo": {"hello": "through the NAT"}});
    client.wait_message(T, |m| {
        serde_json::from_str::<Value>(m).ok().as_ref() == Some(&want)
    });
    client.wait_audio(T, |s| {
        s["rms_dbfs"].as_f64().unwrap_or(-120.0) > -45.0
            && s["freq_hz"]
                .as_f64()
                .is_some_and(|f| (f - 440.0).abs() < 44.0)
    });
    let peer = server
        .registry()
        .peer(pc_id)
        .expect("the bot's peer is live");
    assert!(client.close(), "the client closes");
    let end = Instant::now() + T;
    while !matches!(peer.state(), PeerState::Disconnected | PeerState::Closed) {
        assert!(Instant::now() < end, "the bot never saw the client leave");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// POST → data channel open.
fn connect_time(client: &mut AiortcPeer, posted: Instant) -> Duration {
    client.wait_channel_open(T);
    posted.elapsed()
}

#[test]
fn a_bot_behind_a_nat_is_reached_at_the_address_stun_found() {
    let net = NatNet::new();
    let ice = vec![natnet::stun_url()];
    let server = echo_server(&net.server, natnet::SERVER_IP, &ice, None);

    // A client behind a NAT of its own, with STUN: nobody can reach a private address, so
    // only the srflx candidates can meet.
    let mut client = AiortcPeer::spawn_in_netns(&net.client);
    let offer = client.offer(offer_opts(natnet::CLIENT_IP, &ice));
    let posted = Instant::now();
    let (a, took) = post(&net.server, &server, &offer);
    let sdp = a["sdp"].as_str().unwrap();
    let found = srflx(sdp);
    assert!(
        found.iter().any(|(ip, _)| *ip == natnet::SERVER_NAT_IP),
        "no srflx candidate on the NAT's public address {}: {:?}",
        natnet::SERVER_NAT_IP,
        candidates(sdp)
    );
    assert!(took < Duration::from_secs(3), "the answer took {took:?}");
    client.answer(sdp);
    let open = connect_time(&mut client, posted);
    eprintln!("srflx (both behind NATs): POST → answer {took:?}, → data channel open {open:?}");
    assert_session(&mut client, &server, a["pc_id"].as_str().unwrap());

    // aiortc on the public side (host candidates only) reaches it the same way.
    let mut client = AiortcPeer::spawn_in_netns(&net.public);
    let offer = client.offer(offer_opts(natnet::PUBLIC_IP, &[]));
    let posted = Instant::now();
    let (a, _) = post(&net.server, &server, &offer);
    client.answer(a["sdp"].as_str().unwrap());
    let open = connect_time(&mut client, posted);
    eprintln!("srflx (client public): POST → data channel open {open:?}");
    assert_session(&mut client, &server, a["pc_id"].as_str().unwrap());
    let stats = server.registry().runtime().stats();
    assert!(stats.stun_responses >= 2, "{stats:?}");
    assert_eq!(
        (stats.stun_timeouts, stats.stun_errors),
        (0, 0),
        "{stats:?}"
    );
}

#[test]
fn without_stun_a_bot_behind_a_nat_is_not_reached() {
    let net = NatNet::new();
    let server = echo_server(&net.server, natnet::SERVER_IP, &[], None);
    let mut client = AiortcPeer::spawn_in_netns(&net.client);
    let offer = client.offer(offer_opts(natnet::CLIENT_IP, &[natnet::stun_url()]));
    let (a, _) = post(&net.server, &server, &offer);
    let sdp = a["sdp"].as_str().unwrap();
    assert!(srflx(sdp).is_empty(), "{:?}", candidates(sdp));
    client.answer(sdp);
    // Bounded: a reachable bot connects within a second here (see the test above).
    let end = Instant::now() + Duration::from_secs(6);
    while Instant::now() < end {
        let open = client.try_event(|e| e["event"] == "channel_open");
        assert!(
            open.is_none(),
            "connected without a srflx candidate: the test proves nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let peer = server.registry().peer(a["pc_id"].as_str().unwrap());
    assert!(peer.is_none_or(|p| p.state() != PeerState::Connected));
}

#[test]
fn one_shared_port_learns_its_public_address_at_start() {
    let net = NatNet::new();
    let ice = vec![natnet::stun_url()];
    let rt = FaultNet::run_in(&net.server, {
        let ice = ice.clone();
        move || {
            Runtime::new(RuntimeConfig {
                udp_addr: Some(SocketAddr::new(natnet::SERVER_IP, 0)),
                ice_servers: vec![IceServer {
                    urls: ice,
                    ..IceServer::default()
                }],
                worker_threads: 2,
                ..RuntimeConfig::default()
            })
            .expect("runtime")
        }
    });
    let end = Instant::now() + T;
    while rt.stats().stun_responses == 0 {
        assert!(Instant::now() < end, "no STUN answer: {:?}", rt.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let port = rt.udp_addrs()[0].port();
    let server = echo_server(&net.server, natnet::SERVER_IP, &ice, Some(rt.clone()));
    let mut client = AiortcPeer::spawn_in_netns(&net.client);
    let offer = client.offer(offer_opts(natnet::CLIENT_IP, &ice));
    let posted = Instant::now();
    let (a, took) = post(&net.server, &server, &offer);
    let sdp = a["sdp"].as_str().unwrap();
    assert!(
        srflx(sdp).contains(&(natnet::SERVER_NAT_IP, port)),
        "no srflx {}:{port}: {:?}",
        natnet::SERVER_NAT_IP,
        candidates(sdp)
    );
    client.answer(sdp);
    let open = connect_time(&mut client, posted);
    eprintln!("srflx on the shared port: POST → answer {took:?}, → data channel open {open:?}");
    assert_session(&mut client, &server, a["pc_id"].as_str().unwrap());
    assert_eq!(rt.stats().stun_answers_without_srflx, 0);
}

#[test]
fn a_client_behind_a_nat_reaches_a_public_bot() {
    let net = NatNet::new();
    let server = echo_server(&net.public, natnet::PUBLIC_IP2, &[], None);
    // aiortc as it ships: no STUN, its private address as its only candidate.
    let mut client = AiortcPeer::spawn_in_netns(&net.client);
    let offer = client.offer(offer_opts(natnet::CLIENT_IP, &[]));
    let posted = Instant::now();
    let (a, _) = post(&net.public, &server, &offer);
    client.answer(a["sdp"].as_str().unwrap());
    let open = connect_time(&mut client, posted);
    eprintln!("host (client behind a NAT): POST → data channel open {open:?}");
    assert_session(&mut client, &server, a["pc_id"].as_str().unwrap());
}

#[test]
fn with_direct_udp_blocked_the_session_runs_through_the_bots_turn_relay() {
    let net = NatNet::new();
    net.block_direct();
    let turn = IceServer {
        urls: vec![natnet::turn_url()],
        username: Some(natnet::TURN_USER.into()),
        credential: Some(natnet::TURN_PASSWORD.into()),
    };
    let server = echo_server_with(&net.server, natnet::SERVER_IP, vec![turn], None);
    // The client behind its NAT knows its srflx address (the relay needs a permission for
    // it before the client's checks get through).
    let mut client = AiortcPeer::spawn_in_netns(&net.client);
    let offer = client.offer(offer_opts(natnet::CLIENT_IP, &[natnet::stun_url()]));
    let posted = Instant::now();
    let (a, took) = post(&net.server, &server, &offer);
    let sdp = a["sdp"].as_str().unwrap();
    assert!(
        of_type(sdp, "relay")
            .iter()
            .any(|(ip, _)| *ip == natnet::PUBLIC_IP),
        "no relay candidate on coturn: {:?}",
        candidates(sdp)
    );
    client.answer(sdp);
    let open = connect_time(&mut client, posted);
    eprintln!("relay (direct UDP blocked): POST → answer {took:?}, → data channel open {open:?}");
    let pc_id = a["pc_id"].as_str().unwrap();
    let peer = server.registry().peer(pc_id).expect("live");
    // The pair in use is our relay candidate (stats come once a second).
    let end = Instant::now() + T;
    let pair = loop {
        if let Some(p) = peer.network_stats().unwrap().selected_pair {
            break p;
        }
        assert!(Instant::now() < end, "no selected candidate pair");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(pair.local_type, CandidateType::Relay, "{pair:?}");
    assert_eq!(pair.local_address.ip(), natnet::PUBLIC_IP, "{pair:?}");
    assert_session(&mut client, &server, pc_id);
    let stats = server.registry().runtime().stats();
    assert!(stats.turn_relays >= 1, "{stats:?}");
    // Once the peer closes, its allocation is deleted on coturn.
    peer.close().unwrap();
    let end = Instant::now() + T;
    while !net.coturn_log().contains("delete:") {
        assert!(
            Instant::now() < end,
            "the allocation was not deleted:\n{}",
            net.coturn_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
