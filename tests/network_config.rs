//! Network settings: UDP port range (exhaustion is an I/O error, not a crash), the
//! advertised public address for 1:1 NAT in the answer, and the default bind on every
//! non-loopback interface.

mod common;

use common::str0m_client::{ClientOptions, TestClient};
use smallwebrtc::{ErrorKind, Peer, PeerConfig};

fn offer() -> String {
    TestClient::new(ClientOptions::default()).offer()
}

#[test]
fn peers_bind_inside_the_port_range_until_it_is_full() {
    let base = 47_311u16;
    let cfg = PeerConfig {
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        port_min: base,
        port_max: base + 2,
        ..PeerConfig::default()
    };
    let peers: Vec<Peer> = (0..3)
        .map(|_| Peer::new(cfg.clone(), None).unwrap())
        .collect();
    let mut ports: Vec<u16> = peers.iter().map(|p| p.local_addrs()[0].port()).collect();
    ports.sort();
    assert_eq!(ports, vec![base, base + 1, base + 2]);
    let e = Peer::new(cfg.clone(), None).err().expect("range exhausted");
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.message().contains("no free UDP port"), "{e}");
    drop(peers);
    let e = Peer::new(
        PeerConfig {
            port_min: 10,
            port_max: 5,
            ..cfg
        },
        None,
    )
    .err()
    .expect("inverted range");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn the_public_address_is_advertised_for_one_to_one_nat() {
    let peer = Peer::new(
        PeerConfig {
            bind_ip: Some("127.0.0.1".parse().unwrap()),
            public_ip: Some("203.0.113.7".parse().unwrap()),
            ..PeerConfig::default()
        },
        None,
    )
    .unwrap();
    let answer = peer.handle_offer(&offer()).unwrap();
    let port = peer.local_addrs()[0].port();
    assert!(
        answer.contains(&format!("203.0.113.7 {port} typ srflx")),
        "{answer}"
    );
    assert!(answer.contains(&format!("127.0.0.1 {port} typ host")));
}

#[test]
fn default_bind_uses_interface_addresses() {
    let peer = Peer::new(PeerConfig::default(), None).unwrap();
    assert!(!peer.local_addrs().is_empty());
    let answer = peer.handle_offer(&offer()).unwrap();
    for a in peer.local_addrs() {
        assert!(
            answer.contains(&format!("{} {} typ host", a.ip(), a.port())),
            "{answer}"
        );
    }
}
