//! The STUN client on a virtual clock: request, answer, retransmissions, timeout, refresh.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun_proto::types::attribute::{ErrorCode, XorMappedAddress};
use stun_proto::types::message::{Message, MessageClass, MessageWriteVec, BINDING};
use stun_proto::types::prelude::*;

use super::{Gatherer, StunCounters, StunTransmit};
use crate::limits;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const LOCAL: &str = "10.0.2.2:40000";
const SERVER: &str = "198.51.100.1:3478";
const PUBLIC: &str = "203.0.113.7:40000";

fn setup(refresh: bool) -> (Gatherer, Arc<StunCounters>, Instant) {
    let t0 = Instant::now();
    let counters = Arc::new(StunCounters::default());
    let mut g = Gatherer::new(t0, counters.clone());
    assert!(g.add(addr(LOCAL), addr(SERVER), refresh, t0));
    (g, counters, t0)
}

fn drain(g: &mut Gatherer) -> Vec<StunTransmit> {
    std::iter::from_fn(|| g.poll_transmit()).collect()
}

/// The STUN server's success answer to `req`, naming `mapped`.
fn success(req: &[u8], mapped: SocketAddr) -> Vec<u8> {
    let req = Message::from_bytes(req).unwrap();
    let mut resp = Message::builder_success(&req, MessageWriteVec::new());
    resp.add_attribute(&XorMappedAddress::new(mapped, req.transaction_id()))
        .unwrap();
    resp.finish()
}

fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[test]
fn a_binding_request_learns_the_mapped_address() {
    let (mut g, counters, t0) = setup(false);
    assert!(!g.settled(addr(LOCAL)));
    assert_eq!(g.poll_timeout(), Some(t0));
    g.handle_timeout(t0);
    let sent = drain(&mut g);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].local, sent[0].server), (addr(LOCAL), addr(SERVER)));
    let req = Message::from_bytes(&sent[0].data).unwrap();
    assert!(req.has_class(MessageClass::Request) && req.has_method(BINDING));

    // Peers' traffic and strangers' answers are not claimed.
    assert!(!g.handle_datagram(t0, addr(LOCAL), addr(SERVER), b"\x16\xfe\xfd dtls"));
    let other = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
    let stranger = success(&other, addr(PUBLIC));
    assert!(!g.handle_datagram(t0, addr(LOCAL), addr(SERVER), &stranger));
    // Our id on another socket is not ours either.
    let answer = success(&sent[0].data, addr(PUBLIC));
    assert!(!g.handle_datagram(t0, addr("10.0.2.2:40001"), addr(SERVER), &answer));

    let t1 = t0 + Duration::from_millis(30);
    assert!(g.handle_datagram(t1, addr(LOCAL), addr(SERVER), &answer));
    assert_eq!(g.mapped(addr(LOCAL)), vec![addr(PUBLIC)]);
    assert!(g.settled(addr(LOCAL)));
    assert_eq!(
        (count(&counters.requests), count(&counters.responses)),
        (1, 1)
    );
    // One-shot: nothing more to do, and a repeated answer is no longer claimed.
    assert_eq!(g.poll_timeout(), None);
    assert!(!g.handle_datagram(t1, addr(LOCAL), addr(SERVER), &answer));
}

#[test]
fn a_silent_server_gets_retransmissions_then_times_out() {
    let (mut g, counters, t0) = setup(false);
    g.handle_timeout(t0);
    let first = drain(&mut g);
    let mut at = t0;
    let mut sent_at = vec![];
    // Step the clock by 50 ms for 4 s, collecting what is sent when.
    for _ in 0..80 {
        at += Duration::from_millis(50);
        if g.poll_timeout().is_some_and(|d| d <= at) {
            g.handle_timeout(at);
        }
        for t in drain(&mut g) {
            assert_eq!(
                t.data, first[0].data,
                "a retransmission repeats the request"
            );
            sent_at.push(at.duration_since(t0).as_millis());
        }
    }
    // 200, 400 and 800 ms apart: at 200, 600, 1400 ms.
    assert_eq!(sent_at, vec![200, 600, 1400]);
    assert_eq!(count(&counters.timeouts), 1);
    assert!(g.settled(addr(LOCAL)), "a timeout settles the binding");
    assert!(g.mapped(addr(LOCAL)).is_empty());
    assert_eq!(g.poll_timeout(), None, "a one-shot binding does not retry");
    // The timeout came after the last wait (1400 + 1600 ms), not before.
    assert_eq!(count(&counters.requests), 1);
}

#[test]
fn the_timeout_lands_after_the_last_wait() {
    let (mut g, counters, t0) = setup(false);
    g.handle_timeout(t0);
    for ms in [200, 600, 1400] {
        g.handle_timeout(t0 + Duration::from_millis(ms));
    }
    g.handle_timeout(t0 + Duration::from_millis(2999));
    assert_eq!(count(&counters.timeouts), 0);
    assert!(!g.settled(addr(LOCAL)));
    g.handle_timeout(t0 + Duration::from_millis(3000));
    assert_eq!(count(&counters.timeouts), 1);
}

#[test]
fn a_refreshed_binding_asks_again_and_follows_a_new_mapping() {
    let (mut g, counters, t0) = setup(true);
    g.handle_timeout(t0);
    let req = drain(&mut g).remove(0);
    assert!(g.handle_datagram(
        t0,
        addr(LOCAL),
        addr(SERVER),
        &success(&req.data, addr(PUBLIC))
    ));
    assert_eq!(g.poll_timeout(), Some(t0 + limits::STUN_REFRESH));
    g.handle_timeout(t0 + limits::STUN_REFRESH - Duration::from_millis(1));
    assert!(drain(&mut g).is_empty());

    let t1 = t0 + limits::STUN_REFRESH;
    g.handle_timeout(t1);
    let again = drain(&mut g).remove(0);
    assert_ne!(again.data[8..20], req.data[8..20], "a new transaction");
    // The NAT rebound meanwhile: the new address replaces the old.
    let moved = addr("203.0.113.7:41000");
    assert!(g.handle_datagram(t1, addr(LOCAL), addr(SERVER), &success(&again.data, moved)));
    assert_eq!(g.mapped(addr(LOCAL)), vec![moved]);
    assert_eq!(count(&counters.requests), 2);
}

#[test]
fn a_refreshed_binding_retries_after_a_failure() {
    let (mut g, counters, t0) = setup(true);
    g.handle_timeout(t0);
    let req = drain(&mut g).remove(0);
    // An error response: counted, settled, retried later.
    let parsed = Message::from_bytes(&req.data).unwrap();
    let mut err = Message::builder_error(&parsed, MessageWriteVec::new());
    err.add_attribute(&ErrorCode::new(400, "Bad Request").unwrap())
        .unwrap();
    assert!(g.handle_datagram(t0, addr(LOCAL), addr(SERVER), &err.finish()));
    assert_eq!(count(&counters.errors), 1);
    assert!(g.settled(addr(LOCAL)));
    assert!(g.mapped(addr(LOCAL)).is_empty());
    assert_eq!(g.poll_timeout(), Some(t0 + limits::STUN_RETRY));
}

#[test]
fn an_answer_from_elsewhere_is_claimed_but_learns_nothing() {
    let (mut g, counters, t0) = setup(false);
    g.handle_timeout(t0);
    let req = drain(&mut g).remove(0);
    let forged = success(&req.data, addr("192.0.2.66:1"));
    assert!(g.handle_datagram(t0, addr(LOCAL), addr("192.0.2.66:3478"), &forged));
    assert!(g.mapped(addr(LOCAL)).is_empty());
    assert!(!g.settled(addr(LOCAL)), "the real answer may still come");
    assert!(g.handle_datagram(
        t0,
        addr(LOCAL),
        addr(SERVER),
        &success(&req.data, addr(PUBLIC))
    ));
    assert_eq!(g.mapped(addr(LOCAL)), vec![addr(PUBLIC)]);
    assert_eq!(count(&counters.responses), 1);
}

#[test]
fn bindings_follow_their_sockets() {
    let t0 = Instant::now();
    let mut g = Gatherer::new(t0, Arc::default());
    assert!(
        !g.add(addr(LOCAL), addr("[2001:db8::1]:3478"), false, t0),
        "other family"
    );
    assert!(g.add(addr(LOCAL), addr(SERVER), false, t0));
    assert!(
        !g.add(addr(LOCAL), addr(SERVER), false, t0),
        "already there"
    );
    assert!(
        g.settled(addr("10.0.2.2:1")),
        "no bindings: nothing to wait for"
    );
    g.handle_timeout(t0);
    let req = drain(&mut g).remove(0);
    g.remove_local(addr(LOCAL));
    assert_eq!(g.poll_timeout(), None);
    assert!(!g.handle_datagram(
        t0,
        addr(LOCAL),
        addr(SERVER),
        &success(&req.data, addr(PUBLIC))
    ));
}

#[test]
fn a_mapping_equal_to_the_socket_is_no_candidate() {
    let (mut g, _, t0) = setup(false);
    g.handle_timeout(t0);
    let req = drain(&mut g).remove(0);
    assert!(g.handle_datagram(
        t0,
        addr(LOCAL),
        addr(SERVER),
        &success(&req.data, addr(LOCAL))
    ));
    assert!(g.mapped(addr(LOCAL)).is_empty(), "no NAT in between");
    assert!(g.settled(addr(LOCAL)));
}
