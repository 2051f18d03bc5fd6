//! Fault suite with a real browser: the official Pipecat JS client in headless Chromium,
//! inside the client network namespace (`ip netns exec`), against the echo server in the
//! server namespace, with 5 % random loss each way on the media path between them (the
//! user-space relay). Signalling (HTTP) crosses on a plain TCP forwarder: the relay
//! namespace does not route, and the offer is not what is under test. Asserts that the
//! session connects (bot-ready), messages round-trip and the client hears its own tone
//! bursts come back, and that the loss really happened both ways.
//! Needs `.ci/setup-browser.sh` and root (network namespaces).

mod common;
#[path = "browser/harness.rs"]
mod harness;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::impair::{Dir, FaultNet, Impairment, RELAY_CLIENT_IP, SERVER_IP};
use smallwebrtc::signalling::{echo, Server, ServerConfig};
use smallwebrtc::PeerConfig;

/// The one peer's UDP port: the namespaces are ours alone, so any port is free, and the
/// relay must listen on it before the offer creates the peer.
const MEDIA_PORT: u16 = 40_000;
const DRIVER_TIMEOUT_S: u64 = 90;

/// Forwards TCP connections made to a listener in the client namespace to `to` in the
/// server namespace, until the returned flag is set.
fn forward_tcp(net: &FaultNet, to: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = FaultNet::run_in(&net.client_ns, || {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("forwarder listens")
    });
    let addr = listener.local_addr().expect("forwarder address");
    listener.set_nonblocking(true).expect("nonblocking");
    // A socket lives in the namespace of the thread that creates it: a thread in the
    // server namespace makes the outgoing connections.
    let (connect_tx, connect_rx) = mpsc::channel::<mpsc::Sender<std::io::Result<TcpStream>>>();
    let server_ns = net.server_ns.clone();
    std::thread::spawn(move || {
        FaultNet::run_in(&server_ns, move || {
            for reply in connect_rx {
                let _ = reply.send(TcpStream::connect_timeout(&to, Duration::from_secs(5)));
            }
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        while !stopped.load(Ordering::Relaxed) {
            let client = match listener.accept() {
                Ok((c, _)) => c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(_) => break,
            };
            let (tx, rx) = mpsc::channel();
            if connect_tx.send(tx).is_err() {
                break;
            }
            let Ok(Ok(server)) = rx.recv() else { continue };
            let _ = client.set_nonblocking(false);
            for (mut from, mut to) in [
                (client.try_clone(), server.try_clone()),
                (server.try_clone(), client.try_clone()),
            ]
            .into_iter()
            .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
            {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (addr, stop)
}

#[test]
fn official_client_in_chromium_through_5_percent_loss() {
    harness::check_prerequisites();
    harness::build_bundle();
    let net = FaultNet::new();
    let up = Impairment::loss(5.0);
    let down = Impairment {
        seed: up.seed ^ 0xd0d0,
        ..up
    };
    let server_media = SocketAddr::new(SERVER_IP, MEDIA_PORT);
    let relay = net.relay(MEDIA_PORT, server_media, up, down);
    let server = FaultNet::run_in(&net.server_ns, || {
        let cfg = ServerConfig {
            addr: SocketAddr::new(SERVER_IP, 0),
            peer: PeerConfig {
                bind_ip: Some(SERVER_IP),
                public_ip: Some(RELAY_CLIENT_IP),
                port_min: MEDIA_PORT,
                port_max: MEDIA_PORT,
                ..echo::echo_peer_config()
            },
            ..ServerConfig::default()
        };
        Server::start(cfg, Some(echo::on_peer(true))).expect("echo server starts")
    });
    let (http, stop_forward) = forward_tcp(&net, server.local_addr());

    let cmd = harness::official_client_in(
        &net.client_ns,
        &format!("http://{http}"),
        DRIVER_TIMEOUT_S,
        &[],
    );
    let out = harness::run_with_deadline(
        cmd,
        Duration::from_secs(DRIVER_TIMEOUT_S + 20),
        "official_client.mjs",
        true,
    )
    .expect("node runs");
    stop_forward.store(true, Ordering::Relaxed);
    let (upc, dnc) = (relay.counters(Dir::Up), relay.counters(Dir::Down));
    eprintln!(
        "--- driver stderr ---\n{}\n  up {upc:?}\n  down {dnc:?}",
        harness::tail(&out.stderr, 60)
    );
    let result = harness::driver_result("official_client.mjs", &out);
    eprintln!("result: {}", harness::summary(&result));
    server.stop();

    harness::assert_ok(&result);
    assert_eq!(result["messages"]["rtvi"]["ok"], true, "{result}");
    assert_eq!(result["messages"]["raw4k"]["ok"], true, "{result}");
    assert!(
        result["audio"]["goodBursts"].as_u64().unwrap_or(0) >= 5,
        "{}",
        result["audio"]
    );
    // The media really crossed the relay, and lost packets both ways.
    assert!(
        upc.forwarded > 100 && dnc.forwarded > 100,
        "{upc:?} {dnc:?}"
    );
    assert!(
        upc.dropped_loss > 0 && dnc.dropped_loss > 0,
        "{upc:?} {dnc:?}"
    );
}
