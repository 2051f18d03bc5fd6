//! The impairment relay of the fault suite does what it claims: plain UDP through
//! client ⟷ relay ⟷ server namespaces, checked against its counters.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::impair::{Dir, FaultNet, Impairment, CLIENT_IP, SERVER_IP};

/// Sends `n` datagrams of `size` bytes (sequence number first) client → server through a
/// relay with `up`, and returns the sequence numbers the server received, in order.
fn send_through(up: Impairment, n: u32, size: usize) -> (Vec<u32>, common::impair::Counters) {
    let net = FaultNet::new();
    let server = FaultNet::run_in(&net.server_ns, || {
        UdpSocket::bind(SocketAddr::new(SERVER_IP, 0)).unwrap()
    });
    let server_addr = server.local_addr().unwrap();
    let relay = net.relay(server_addr.port(), server_addr, up, Impairment::default());
    let client = FaultNet::run_in(&net.client_ns, || {
        UdpSocket::bind(SocketAddr::new(CLIENT_IP, 0)).unwrap()
    });
    // The client cannot reach the server but through the relay.
    assert!(
        client.send_to(b"direct", server_addr).is_err() || {
            server
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            server.recv_from(&mut [0u8; 16]).is_err()
        },
        "the client reached the server directly"
    );
    // The server reads while the client sends, so its socket buffer never overflows.
    let reader = {
        let server = server.try_clone().unwrap();
        std::thread::spawn(move || {
            server
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            let end = Instant::now() + Duration::from_secs(20);
            let mut quiet_since = Instant::now();
            while Instant::now() < end && quiet_since.elapsed() < Duration::from_secs(1) {
                if let Ok((len, _)) = server.recv_from(&mut buf) {
                    assert_eq!(len, size);
                    got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
                    quiet_since = Instant::now();
                }
            }
            got
        })
    };
    for i in 0..n {
        let mut d = vec![0u8; size];
        d[..4].copy_from_slice(&i.to_be_bytes());
        client.send_to(&d, relay.listen_addr()).unwrap();
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(1)); // stay within socket buffers
        }
    }
    let got = reader.join().unwrap();
    let mut buf = [0u8; 2048];
    let counters = relay.counters(Dir::Up);
    // The way back works too: a clean probe up tells the server the relay's address.
    relay.set(Dir::Up, Impairment::default());
    client.send_to(b"probe", relay.listen_addr()).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (_, relay_src) = server.recv_from(&mut buf).expect("the probe");
    server.send_to(b"back", relay_src).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (len, from) = client.recv_from(&mut buf).expect("reply through the relay");
    assert_eq!((&buf[..len], from), (&b"back"[..], relay.listen_addr()));
    (got, counters)
}

#[test]
fn loss_mtu_and_reordering_happen_and_are_counted() {
    // 10 % loss: about 100 of 1000 go, each counted.
    let (got, c) = send_through(Impairment::loss(10.0), 1000, 200);
    assert_eq!(c.received, 1000, "{c:?}");
    assert_eq!(got.len() as u64 + c.dropped_loss, 1000, "{c:?}");
    assert!((50..=150).contains(&c.dropped_loss), "{c:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "no reordering asked");

    // MTU 1280: 1253-byte payloads (1281 with headers) dropped, 1252 pass.
    let mtu = Impairment {
        mtu: Some(1280),
        ..Impairment::default()
    };
    let (got, c) = send_through(mtu, 50, 1253);
    assert!(got.is_empty());
    assert_eq!((c.dropped_mtu, c.max_payload), (50, 1253), "{c:?}");
    let (got, c) = send_through(mtu, 50, 1252);
    assert_eq!((got.len(), c.dropped_mtu), (50, 0), "{c:?}");

    // 40 ± 20 ms with reordering: everything arrives, some out of order.
    let jitter = Impairment {
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(20),
        reorder: true,
        ..Impairment::default()
    };
    let (got, c) = send_through(jitter, 300, 100);
    assert_eq!(got.len(), 300, "{c:?}");
    assert!(
        c.reordered > 0 && got.windows(2).any(|w| w[0] > w[1]),
        "{c:?}"
    );
}

#[test]
fn rate_cap_queues_then_drops() {
    // 200 datagrams of 1000 bytes at once into 500 kbit/s with a 200 ms queue: about
    // 12 fit (200 ms × 500 kbit/s / 8228 bit), the rest are dropped as a full queue.
    let cap = Impairment {
        rate_bps: Some(500_000),
        ..Impairment::default()
    };
    let (got, c) = send_through(cap, 200, 1000);
    assert!(c.dropped_rate > 100, "{c:?}");
    assert_eq!(got.len() as u64 + c.dropped_rate, 200, "{c:?}");
}
