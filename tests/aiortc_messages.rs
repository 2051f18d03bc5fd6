//! Data-channel protocol against aiortc, an independent WebRTC stack, over real UDP on
//! 127.0.0.1: connect, app messages both ways in order, pre-open queueing, peerLeft on
//! disconnect, and renegotiation on the same peer.

mod common;

use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use common::peers::loopback;
use serde_json::json;
use smallwebrtc::{Peer, PeerEvent, PeerState};

const T: Duration = Duration::from_secs(15);

fn wait_state(peer: &Peer, want: PeerState) {
    let end = Instant::now() + T;
    while Instant::now() < end {
        if let Some(PeerEvent::State(s)) = peer.poll_event(Some(Duration::from_millis(100))) {
            if s == want {
                return;
            }
        }
    }
    panic!("peer never reached {want:?}; state {:?}", peer.state());
}

fn next_message(peer: &Peer) -> String {
    let end = Instant::now() + T;
    while Instant::now() < end {
        if let Some(PeerEvent::Message { data, .. }) =
            peer.poll_event(Some(Duration::from_millis(100)))
        {
            return String::from_utf8(data).unwrap();
        }
    }
    panic!("no app message within {T:?}");
}

#[test]
fn messages_both_ways_in_order_and_peer_left_on_disconnect() {
    let mut client = AiortcPeer::spawn();
    let peer = Peer::new(loopback(), None).unwrap();
    let offer = client.offer(json!({"audio": true, "video": true}));
    // Queued before the client even has an answer: flushed in order on open.
    for i in 0..5 {
        peer.send_message(format!("{{\"early\":{i}}}").as_bytes(), false)
            .unwrap();
    }
    let answer = peer.handle_offer(&offer).unwrap();
    assert!(
        answer.contains("127.0.0.1"),
        "answer carries our host candidate"
    );
    client.answer(&answer);
    client.wait_channel_open(T);
    peer.connect().unwrap();
    wait_state(&peer, PeerState::Connected);

    for i in 0..5 {
        let m = client.wait_message(T, |m| m.contains("early"));
        assert_eq!(m, format!("{{\"early\":{i}}}"));
    }
    for i in 0..20 {
        client.send_text(&format!("{{\"n\":{i}}}"));
    }
    for i in 0..20 {
        assert_eq!(next_message(&peer), format!("{{\"n\":{i}}}"));
    }
    for i in 0..20 {
        peer.send_message(format!("{{\"m\":{i}}}").as_bytes(), false)
            .unwrap();
    }
    for i in 0..20 {
        let m = client.wait_message(T, |m| m.contains("\"m\""));
        assert_eq!(m, format!("{{\"m\":{i}}}"));
    }
    let stats = peer.stats().unwrap();
    assert!(stats.pings_in >= 1 || stats.messages_in == 20, "{stats:?}");
    assert_eq!(
        stats.messages_in, 20,
        "pings and trackStatus are not app messages"
    );

    peer.disconnect().unwrap();
    client.wait_message(T, |m| m.contains("peerLeft"));
    wait_state(&peer, PeerState::Closed);
}

#[test]
fn renegotiation_on_the_same_peer_keeps_the_channel() {
    let mut client = AiortcPeer::spawn();
    let peer = Peer::new(loopback(), None).unwrap();
    let offer = client.offer(json!({"audio": true, "video": true}));
    client.answer(&peer.handle_offer(&offer).unwrap());
    client.wait_channel_open(T);
    peer.connect().unwrap();
    wait_state(&peer, PeerState::Connected);

    let offer2 = client.renegotiate();
    let answer2 = peer.handle_offer(&offer2).unwrap();
    client.answer(&answer2);
    client.send_text("after-renegotiation");
    assert_eq!(next_message(&peer), "after-renegotiation");
    peer.send_message(b"\"back\"", false).unwrap();
    client.wait_message(T, |m| m == "\"back\"");
    assert_eq!(peer.state(), PeerState::Connected);
}
