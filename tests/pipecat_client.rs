//! Our peer against a str0m client that behaves like Pipecat's JS client (audio, video,
//! screen transceivers in that order; "chat" channel; `ping: <ms>` every second;
//! trackStatus on open), over real UDP on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::peers::loopback;
use common::str0m_client::{ClientEvent, ClientOptions, TestClient};
use smallwebrtc::{Peer, PeerEvent, PeerState};

const T: Duration = Duration::from_secs(15);

thread_local! {
    /// Events seen but not yet waited for, so a later wait can still find them.
    static BACKLOG: std::cell::RefCell<Vec<PeerEvent>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn wait_event(peer: &Peer, what: &str, pred: impl Fn(&PeerEvent) -> bool) -> PeerEvent {
    if let Some(ev) = BACKLOG.with(|b| {
        let mut b = b.borrow_mut();
        let i = b.iter().position(&pred)?;
        Some(b.remove(i))
    }) {
        return ev;
    }
    let end = Instant::now() + T;
    while Instant::now() < end {
        if let Some(ev) = peer.poll_event(Some(Duration::from_millis(50))) {
            if pred(&ev) {
                return ev;
            }
            BACKLOG.with(|b| b.borrow_mut().push(ev));
        }
    }
    panic!("{what} never happened; state {:?}", peer.state());
}

fn connected_pair(opts: ClientOptions) -> (TestClient, Peer) {
    let mut client = TestClient::new(opts);
    let peer = Peer::new(loopback(), None).unwrap();
    let offer = client.offer();
    let answer = peer.handle_offer(&offer).unwrap();
    // Trickle the client's candidate as the JS client does with PATCH, twice (aiortc and
    // browsers repeat candidates), then end-of-candidates.
    let cand = client.local_candidate();
    peer.add_ice_candidate(&cand).unwrap();
    peer.add_ice_candidate(&cand).unwrap();
    peer.add_ice_candidate("").unwrap();
    client.accept_answer(&answer).unwrap();
    assert!(client
        .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
        .is_some());
    peer.connect().unwrap();
    wait_event(&peer, "connected", |e| {
        *e == PeerEvent::State(PeerState::Connected)
    });
    (client, peer)
}

#[test]
fn pipecat_like_client_connects_with_pings_and_track_status() {
    let (client, peer) = connected_pair(ClientOptions {
        screen: true,
        ..ClientOptions::default()
    });
    wait_event(&peer, "trackStatus", |e| {
        matches!(
            e,
            PeerEvent::TrackStatus {
                receiver_index: 0,
                enabled: true
            }
        )
    });
    client.send_track_status(1, false);
    wait_event(&peer, "camera disabled", |e| {
        matches!(
            e,
            PeerEvent::TrackStatus {
                receiver_index: 1,
                enabled: false
            }
        )
    });
    assert!(!peer.track_enabled(1));
    assert!(peer.track_enabled(0));

    client.send_text(r#"{"label":"rtvi-ai","type":"client-ready","id":"1"}"#);
    let ev = wait_event(&peer, "app message", |e| {
        matches!(e, PeerEvent::Message { .. })
    });
    let PeerEvent::Message { data, binary } = ev else {
        unreachable!()
    };
    assert!(!binary);
    assert!(String::from_utf8(data).unwrap().contains("client-ready"));
    peer.send_message(br#"{"label":"rtvi-ai","type":"bot-ready"}"#, false)
        .unwrap();
    assert!(client
        .wait_message(T, |m| m.contains("bot-ready"))
        .is_some());

    // Two pings arrive within about two seconds; none is an app message.
    let end = Instant::now() + T;
    while peer.stats().unwrap().pings_in < 2 {
        assert!(Instant::now() < end, "pings never arrived");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(peer.stats().unwrap().messages_in, 1);
}

#[test]
fn a_client_that_goes_silent_is_reported_disconnected() {
    let (mut client, peer) = connected_pair(ClientOptions::default());
    // Wait for a ping so liveness is judged by pings, then cut the client off.
    let end = Instant::now() + T;
    while peer.stats().unwrap().pings_in < 1 {
        assert!(Instant::now() < end, "no ping");
        std::thread::sleep(Duration::from_millis(50));
    }
    client.abort();
    let started = Instant::now();
    wait_event(&peer, "disconnected", |e| {
        *e == PeerEvent::State(PeerState::Disconnected)
    });
    // Three seconds of ping window; allow scheduling slack on a busy machine.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn disconnect_frees_the_port() {
    let (client, peer) = connected_pair(ClientOptions::default());
    let addr = peer.local_addrs()[0];
    peer.disconnect().unwrap();
    assert!(client.wait_message(T, |m| m.contains("peerLeft")).is_some());
    wait_event(&peer, "closed", |e| {
        *e == PeerEvent::State(PeerState::Closed)
    });
    let end = Instant::now() + T;
    loop {
        match std::net::UdpSocket::bind(addr) {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < end, "port {addr} still bound: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
