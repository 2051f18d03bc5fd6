//! Batched reads and sends on real loopback sockets.

use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;

use super::UdpBatch;
use crate::limits;
use crate::runtime::demux::DemuxCounters;

fn shared_socket() -> (Vec<(UdpSocket, SocketAddr)>, SocketAddr) {
    let s = StdUdp::bind("127.0.0.1:0").expect("bind");
    let local = s.local_addr().expect("local addr");
    (vec![(UdpSocket::from_std(s), local)], local)
}

/// Reads every datagram until `want` arrived (deadline 10 s); returns them and how many
/// receive calls returned more than one.
fn read_all(
    batch: &mut UdpBatch,
    socks: &[(UdpSocket, SocketAddr)],
    want: usize,
) -> (Vec<(SocketAddr, Vec<u8>)>, usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut got, mut multi) = (Vec::new(), 0);
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} arrived",
            got.len()
        );
        match batch.recv(0, &socks[0].0) {
            Ok(n) => {
                multi += usize::from(n > 1);
                for i in 0..n {
                    let (src, dgrams) = batch.datagrams(i);
                    got.extend(dgrams.map(|d| (src, d.to_vec())));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::yield_now();
            }
            Err(e) => panic!("recv failed: {e}"),
        }
    }
    (got, multi)
}

#[test]
fn one_call_reads_several_datagrams_and_oversized_ones_stay_countable() {
    let (socks, local) = shared_socket();
    let counters = Arc::new(DemuxCounters::default());
    let mut batch = UdpBatch::new(&socks, counters.clone()).expect("batch");
    let client = StdUdp::bind("127.0.0.1:0").expect("bind client");
    let from = client.local_addr().expect("client addr");
    // Loopback queues a burst before the reader looks, so one call takes several; a
    // kernel busy elsewhere may deliver a burst late, hence a few tries.
    let mut batched = false;
    for _ in 0..5 {
        for i in 0..10u8 {
            client
                .send_to(&vec![i; 100 + i as usize], local)
                .expect("send");
        }
        let (got, multi) = read_all(&mut batch, &socks, 10);
        for (i, (src, d)) in got.iter().enumerate() {
            assert_eq!(*src, from);
            assert_eq!(d, &vec![i as u8; 100 + i]);
        }
        if multi > 0 {
            batched = true;
            break;
        }
    }
    assert!(batched, "no receive call returned more than one datagram");
    // Larger than the limit: read past it (whole with GRO's large slots, else truncated
    // one byte past it), so the caller counts it as oversized.
    client
        .send_to(&vec![7; limits::MAX_DATAGRAM + 500], local)
        .expect("send big");
    let (got, _) = read_all(&mut batch, &socks, 1);
    assert!(got[0].1.len() > limits::MAX_DATAGRAM);
    let c = &counters.batch;
    assert!(c.datagrams_in.load(Ordering::Relaxed) >= 11);
    assert!(c.recv_calls.load(Ordering::Relaxed) >= 2);
}

#[test]
fn queued_sends_arrive_in_order_with_equal_size_runs_grouped() {
    let (socks, _) = shared_socket();
    let counters = Arc::new(DemuxCounters::default());
    let mut batch = UdpBatch::new(&socks, counters.clone()).expect("batch");
    let a = StdUdp::bind("127.0.0.1:0").expect("bind a");
    let b = StdUdp::bind("127.0.0.1:0").expect("bind b");
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
    }
    let (to_a, to_b) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
    // Five of 300 bytes and a shorter last one to `a` (one GSO run), then one to `b`.
    let mut sent_a = Vec::new();
    for i in 0..5u8 {
        sent_a.push(vec![i; 300]);
    }
    sent_a.push(vec![9; 120]);
    for d in &sent_a {
        assert!(!batch.queue(0, to_a, d));
    }
    assert!(!batch.queue(0, to_b, &[42; 50]));
    batch.send_all(&socks);
    let mut buf = [0u8; 4096];
    for want in &sent_a {
        let n = a.recv(&mut buf).expect("datagram to a");
        assert_eq!(&buf[..n], &want[..]);
    }
    let n = b.recv(&mut buf).expect("datagram to b");
    assert_eq!(&buf[..n], &[42; 50][..]);
    let c = &counters.batch;
    assert_eq!(c.datagrams_out.load(Ordering::Relaxed), 7);
    assert_eq!(c.send_dropped.load(Ordering::Relaxed), 0);
    let gso = batch.states[0].max_gso_segments() > 1;
    let calls = c.send_calls.load(Ordering::Relaxed);
    // With GSO: one call for the run to `a`, one for `b`. Without, on Linux, all seven
    // in one sendmmsg; elsewhere one call each.
    let expected = match (gso, cfg!(target_os = "linux")) {
        (true, _) => 2,
        (false, true) => 1,
        (false, false) => 7,
    };
    assert_eq!(calls, expected, "gso {gso}");
}

#[cfg(target_os = "linux")]
#[test]
fn datagrams_of_many_peers_leave_in_one_call() {
    let (socks, _) = shared_socket();
    let counters = Arc::new(DemuxCounters::default());
    let mut batch = UdpBatch::new(&socks, counters.clone()).expect("batch");
    let peers: Vec<StdUdp> = (0..4)
        .map(|_| StdUdp::bind("127.0.0.1:0").expect("bind peer"))
        .collect();
    // Three rounds over four peers, sizes all different: nothing GSO could group.
    for round in 0..3u8 {
        for (p, s) in peers.iter().enumerate() {
            let d = vec![round * 10 + p as u8; 100 + 10 * (round as usize * 4 + p)];
            batch.queue(0, s.local_addr().expect("addr"), &d);
        }
    }
    batch.send_all(&socks);
    let mut buf = [0u8; 2048];
    for (p, s) in peers.iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        for round in 0..3u8 {
            let n = s.recv(&mut buf).expect("datagram");
            assert_eq!(n, 100 + 10 * (round as usize * 4 + p));
            assert!(buf[..n].iter().all(|&b| b == round * 10 + p as u8));
        }
    }
    let c = &counters.batch;
    assert_eq!(c.datagrams_out.load(Ordering::Relaxed), 12);
    assert_eq!(c.send_calls.load(Ordering::Relaxed), 1);
}

#[test]
fn a_full_queue_asks_for_a_send() {
    let (socks, _) = shared_socket();
    let mut batch = UdpBatch::new(&socks, Arc::new(DemuxCounters::default())).expect("batch");
    let to: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let full = (0..super::OUT_MAX).any(|_| batch.queue(0, to, &[1; 10]));
    assert!(full, "the queue never asked to be sent");
    batch.send_all(&socks);
    assert!(batch.out.is_empty() && batch.out_bytes.is_empty());
}
