//! The demultiplexer's tables on a virtual clock: routing by ufrag, binding, rebinding,
//! the bounds and cleanup.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// A STUN binding request with `USERNAME` = `user` (no integrity: routing never checks it).
fn check(user: &str) -> Vec<u8> {
    let mut attr = vec![0x00, 0x06];
    attr.extend_from_slice(&(user.len() as u16).to_be_bytes());
    attr.extend_from_slice(user.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    // A PRIORITY attribute first, so the walk has to skip one.
    let mut body = vec![0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4];
    body.extend_from_slice(&attr);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(&STUN_MAGIC);
    m.extend_from_slice(&[7; 12]);
    m.extend_from_slice(&body);
    m
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

fn demux() -> (Demux, Arc<DemuxCounters>) {
    let c = Arc::new(DemuxCounters::default());
    (Demux::new(c.clone()), c)
}

const DTLS: &[u8] = &[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

#[test]
fn parses_the_local_ufrag_and_refuses_malformed_checks() {
    assert_eq!(stun_request_local_ufrag(&check("abcd:wxyz")), Some("abcd"));
    assert_eq!(stun_request_local_ufrag(&check("abcd")), None);
    assert_eq!(stun_request_local_ufrag(&check(":wxyz")), None);
    assert_eq!(stun_request_local_ufrag(DTLS), None);
    let good = check("abcd:wxyz");
    // Every truncation, and a length field pointing past the end, is refused cleanly.
    for n in 0..good.len() {
        assert_eq!(stun_request_local_ufrag(&good[..n]), None, "cut at {n}");
    }
    let mut long = good.clone();
    long[3] = 0xff;
    assert_eq!(stun_request_local_ufrag(&long), None);
    // A binding response (0x0101) is not a check.
    let mut resp = good.clone();
    resp[0] = 0x01;
    assert_eq!(stun_request_local_ufrag(&resp), None);
}

#[test]
fn checks_route_by_ufrag_then_the_bound_address_carries_the_rest() {
    let (mut d, c) = demux();
    let now = Instant::now();
    assert!(d.set_ufrag(3, "peer3"));
    assert!(d.set_ufrag(5, "peer5"));
    assert_eq!(d.route(addr(1000), DTLS, now), Route::Drop);
    assert_eq!(c.dropped_unbound.load(Ordering::Relaxed), 1);
    assert_eq!(d.route(addr(1000), &check("peer5:c"), now), Route::Check(5));
    assert_eq!(d.route(addr(1000), &check("other:c"), now), Route::Drop);
    assert_eq!(c.dropped_unknown_ufrag.load(Ordering::Relaxed), 1);
    d.bind(addr(1000), 5, now);
    assert_eq!(d.route(addr(1000), DTLS, now), Route::Bound(5));
    assert_eq!(d.route(addr(1001), DTLS, now), Route::Drop);
    // A ufrag already taken by another live peer is refused.
    assert!(!d.set_ufrag(4, "peer3"));
    assert_eq!(c.bindings.load(Ordering::Relaxed), 1);
}

#[test]
fn a_rebinding_client_keeps_its_peer_and_its_old_address_ages_out() {
    let (mut d, c) = demux();
    let t0 = Instant::now();
    d.set_ufrag(1, "u1");
    d.bind(addr(1000), 1, t0);
    // The NAT moves the client to a new port: its next check binds that one too.
    let t1 = t0 + Duration::from_secs(5);
    assert_eq!(d.route(addr(2000), &check("u1:c"), t1), Route::Check(1));
    d.bind(addr(2000), 1, t1);
    assert_eq!(d.route(addr(2000), DTLS, t1), Route::Bound(1));
    // Traffic keeps the new binding fresh; the old one goes once idle past the bound.
    let t2 = t0 + limits::BINDING_IDLE + Duration::from_secs(1);
    assert_eq!(d.route(addr(2000), DTLS, t2), Route::Bound(1));
    d.expire(t2);
    assert_eq!(d.slot_of(addr(1000)), None);
    assert_eq!(d.slot_of(addr(2000)), Some(1));
    assert_eq!(c.bindings_evicted.load(Ordering::Relaxed), 1);
    assert_eq!(d.len(), 1);
}

#[test]
fn per_peer_and_table_bounds_push_out_the_least_recently_seen() {
    let (mut d, c) = demux();
    let t0 = Instant::now();
    d.set_ufrag(1, "u1");
    let n = limits::MAX_BINDINGS_PER_PEER as u16;
    for i in 0..n {
        d.bind(addr(1000 + i), 1, t0 + Duration::from_millis(u64::from(i)));
    }
    // Address 1000 is the oldest, but it is used again: 1001 is now the least recent.
    let later = t0 + Duration::from_secs(1);
    assert_eq!(d.route(addr(1000), DTLS, later), Route::Bound(1));
    d.bind(addr(5000), 1, later);
    assert_eq!(d.len(), limits::MAX_BINDINGS_PER_PEER);
    assert_eq!(d.slot_of(addr(1001)), None);
    assert_eq!(d.slot_of(addr(1000)), Some(1));
    assert_eq!(d.slot_of(addr(5000)), Some(1));

    // The whole table: one address per peer up to the bound, then the oldest goes.
    let (mut d, c2) = demux();
    for slot in 0..limits::MAX_BINDINGS {
        let a = SocketAddr::from(([10, 0, (slot >> 8) as u8, slot as u8], 9));
        d.bind(a, slot, t0 + Duration::from_micros(slot as u64));
    }
    assert_eq!(d.len(), limits::MAX_BINDINGS);
    d.bind(addr(1), 99_999, later);
    assert_eq!(d.len(), limits::MAX_BINDINGS);
    assert_eq!(d.slot_of(SocketAddr::from(([10, 0, 0, 0], 9))), None);
    assert_eq!(d.slot_of(addr(1)), Some(99_999));
    assert_eq!(c2.bindings_evicted.load(Ordering::Relaxed), 1);
    assert!(c.bindings_evicted.load(Ordering::Relaxed) >= 1);
}

#[test]
fn a_closed_peer_leaves_nothing_behind_and_its_slot_is_reusable() {
    let (mut d, c) = demux();
    let t0 = Instant::now();
    d.set_ufrag(2, "old");
    d.bind(addr(1000), 2, t0);
    d.bind(addr(1001), 2, t0);
    d.remove_peer(2);
    assert_eq!(d.len(), 0);
    assert_eq!(c.bindings.load(Ordering::Relaxed), 0);
    assert_eq!(d.route(addr(1000), DTLS, t0), Route::Drop);
    assert_eq!(d.route(addr(1000), &check("old:c"), t0), Route::Drop);
    // The slot comes back for a new peer; the old ufrag stays gone.
    assert!(d.set_ufrag(2, "new"));
    assert_eq!(d.route(addr(1000), &check("new:c"), t0), Route::Check(2));
    assert!(d.set_ufrag(7, "old"));
    // An address bound to one peer moves to another on that peer's authenticated check.
    d.bind(addr(1000), 2, t0);
    d.bind(addr(1000), 7, t0);
    assert_eq!(d.slot_of(addr(1000)), Some(7));
    d.remove_peer(2);
    assert_eq!(d.slot_of(addr(1000)), Some(7));
}

#[test]
fn what_a_peer_sends_to_its_left_behind_address_goes_to_its_live_one() {
    let (mut d, _) = demux();
    let t0 = Instant::now();
    d.set_ufrag(1, "u1");
    d.set_ufrag(2, "u2");
    d.bind(addr(1000), 1, t0);
    d.bind(addr(3000), 2, t0);
    // One address, live: untouched. Unknown destinations too.
    assert_eq!(d.send_to(1, addr(1000), t0), addr(1000));
    assert_eq!(d.send_to(1, addr(9), t0), addr(9));
    // The NAT moves the client; the new address is bound and carries media.
    let t1 = t0 + Duration::from_millis(300);
    d.bind(addr(2000), 1, t1);
    assert_eq!(d.send_to(1, addr(1000), t1), addr(1000), "not stale yet");
    let t2 = t0 + limits::BINDING_STALE + Duration::from_millis(100);
    assert_eq!(d.route(addr(2000), DTLS, t2), Route::Bound(1));
    assert_eq!(d.send_to(1, addr(1000), t2), addr(2000));
    // Never to another peer's address, and not when the newer one is quiet too.
    assert_eq!(d.send_to(1, addr(3000), t2), addr(3000));
    let t3 = t2 + limits::BINDING_STALE * 2;
    assert_eq!(d.send_to(1, addr(1000), t3), addr(1000));
    // The old address speaks again (the client moved back): it is used again.
    assert_eq!(d.route(addr(1000), DTLS, t3), Route::Bound(1));
    assert_eq!(d.send_to(1, addr(1000), t3), addr(1000));
}

#[test]
fn answers_to_our_checks_reach_their_peer_before_the_client_is_bound() {
    let (mut d, c) = demux();
    let t0 = Instant::now();
    d.set_ufrag(1, "u1");
    // Peer 1 checks a client address it learnt from the offer.
    let ours = check("client:u1");
    d.note_sent(1, addr(1000), &ours, t0);
    let mut answer = ours.clone();
    answer[0] = 0x01; // binding success response, same transaction id
    assert_eq!(d.route(addr(1000), &answer, t0), Route::Reply(1));
    assert_eq!(d.slot_of(addr(1000)), None, "an answer binds nothing");
    // A second answer (to a retransmission, same id) too; one nobody asked for is dropped.
    assert_eq!(d.route(addr(1000), &answer, t0), Route::Reply(1));
    answer[10] ^= 1;
    assert_eq!(d.route(addr(1000), &answer, t0), Route::Drop);
    assert_eq!(c.dropped_unbound.load(Ordering::Relaxed), 1);
    // Bounded, forgotten with the peer and with age.
    for i in 0..limits::MAX_PENDING_CHECKS + 10 {
        let mut m = ours.clone();
        m[8..16].copy_from_slice(&(i as u64).to_be_bytes());
        d.note_sent(1, addr(1000), &m, t0);
    }
    assert_eq!(d.sent.len(), limits::MAX_PENDING_CHECKS);
    d.expire(t0 + limits::BINDING_IDLE);
    assert!(d.sent.is_empty());
    d.note_sent(1, addr(1000), &ours, t0);
    d.remove_peer(1);
    assert!(d.sent.is_empty());
    // Checks to an address already bound to the peer are not noted (its answer is bound).
    d.set_ufrag(1, "u1");
    d.bind(addr(1000), 1, t0);
    d.note_sent(1, addr(1000), &ours, t0);
    assert!(d.sent.is_empty());
}
