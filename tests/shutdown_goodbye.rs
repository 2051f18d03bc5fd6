//! Goodbyes on shutdown over real loopback UDP: when the bot shuts down (server or
//! runtime), a connected client gets `peerLeft`, then SCTP shutdown and DTLS close_notify,
//! and notices within 1 s instead of at its consent timeout (str0m client and aiortc).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use common::str0m_client::{ClientEvent, ClientOptions, TestClient};
use serde_json::json;
use smallwebrtc::signalling::{echo, Server, ServerConfig};
use smallwebrtc::{Peer, PeerState, Runtime, RuntimeConfig};

const T: Duration = Duration::from_secs(20);
const NOTICE: Duration = Duration::from_secs(1);

fn echo_server(runtime: Option<Runtime>) -> Server {
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        peer: common::peers::loopback(),
        runtime,
        ..ServerConfig::default()
    };
    Server::start(cfg, Some(echo::on_peer(true))).expect("server starts")
}

/// POSTs `offer` to the server; the answer SDP.
fn post_offer(server: &Server, offer: &str) -> String {
    let v = common::offer::post_offer(server.local_addr(), offer);
    v["sdp"].as_str().expect("sdp").to_owned()
}

fn str0m_client(server: &Server) -> TestClient {
    let mut c = TestClient::new(ClientOptions {
        video: false,
        ..ClientOptions::default()
    });
    let answer = post_offer(server, &c.offer());
    c.accept_answer(&answer).unwrap();
    assert!(
        c.wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
            .is_some(),
        "the data channel never opened"
    );
    c
}

/// After the bot said goodbye: the client got `peerLeft` and its channel closed (SCTP) or
/// its transport went down (DTLS close_notify) within `NOTICE` of `t0`.
fn assert_str0m_noticed(c: &TestClient, t0: Instant) {
    assert!(
        c.wait_message(T, |m| m.contains("peerLeft")).is_some(),
        "no peerLeft"
    );
    let gone = c.wait_for(T, |e| {
        matches!(e, ClientEvent::ChannelClosed | ClientEvent::Disconnected)
    });
    let noticed = t0.elapsed();
    assert!(gone.is_some(), "the client never noticed the bot leaving");
    assert!(noticed < NOTICE, "noticed after {noticed:?}");
}

#[test]
fn server_shutdown_says_goodbye_to_a_str0m_client() {
    let mut server = echo_server(None);
    let c = str0m_client(&server);
    let c2 = str0m_client(&server);
    let t0 = Instant::now();
    let closed = server.shutdown(Duration::from_secs(1));
    assert_eq!(closed, 2);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        t0.elapsed()
    );
    assert_str0m_noticed(&c, t0);
    assert_str0m_noticed(&c2, t0);
    // Idempotent, and nothing left to close.
    assert_eq!(server.shutdown(Duration::from_secs(1)), 0);
}

#[test]
fn runtime_shutdown_says_goodbye_and_the_runtime_stays_usable() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let server = echo_server(Some(rt.clone()));
    let c = str0m_client(&server);
    let t0 = Instant::now();
    assert_eq!(rt.shutdown(Duration::from_secs(1)), 1);
    assert_str0m_noticed(&c, t0);
    assert_eq!(rt.peer_count(), 0);
    // New peers still work on it.
    let _c = str0m_client(&server);
    assert_eq!(rt.peer_count(), 1);
}

#[test]
fn a_peer_closed_by_the_app_says_goodbye_at_once() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let peer = Arc::new(Peer::with_runtime(&rt, common::peers::loopback(), None).unwrap());
    let mut c = TestClient::new(ClientOptions {
        video: false,
        ..ClientOptions::default()
    });
    common::peers::open_str0m(&mut c, &peer, T);
    common::peers::wait_connected(&peer, T);
    let t0 = Instant::now();
    peer.close_and_wait(Duration::from_secs(1)).unwrap();
    assert_eq!(peer.state(), PeerState::Closed);
    assert_str0m_noticed(&c, t0);
}

#[test]
fn server_shutdown_says_goodbye_to_aiortc() {
    let mut server = echo_server(None);
    let mut client = AiortcPeer::spawn();
    let offer = client.offer(json!({"audio": true, "video": false}));
    let answer = post_offer(&server, &offer);
    client.answer(&answer);
    client.wait_channel_open(T);
    let t0 = Instant::now();
    assert_eq!(server.shutdown(Duration::from_secs(1)), 1);
    client.wait_message(T, |m| m.contains("peerLeft"));
    client.wait_connection_state("closed", T);
    let noticed = t0.elapsed();
    assert!(noticed < NOTICE, "aiortc noticed after {noticed:?}");
}

#[test]
fn the_echo_example_says_goodbye_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let echo = common::echo_example();
    let mut child = Command::new(echo)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the echo example starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let mut c = TestClient::new(ClientOptions {
        video: false,
        ..ClientOptions::default()
    });
    let answer = common::offer::post_offer(addr, &c.offer());
    c.accept_answer(answer["sdp"].as_str().unwrap()).unwrap();
    assert!(c
        .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
        .is_some());
    let t0 = Instant::now();
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_str0m_noticed(&c, t0);
    let end = Instant::now() + T;
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the echo example did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "exit status {code}");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert!(rest.contains("goodbye to 1 peer"), "{rest:?}");
}
