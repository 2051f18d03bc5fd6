//! ICE over TCP (`RuntimeConfig::tcp_addr`) on loopback with real sockets: our str0m test
//! client offers only a `tcptype active` candidate and carries everything (checks, DTLS,
//! SCTP, audio) over one TCP connection in RFC 4571 frames. The session connects, audio
//! and app messages flow both ways, the answer offers the passive candidate in every
//! m-section, and the connection is closed when the peer closes. Hostile connections
//! (garbage, oversized frames, checks naming no peer or failing integrity, connections
//! that never send a check, a flood from one address) are closed and counted while a
//! normal client keeps its audio.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::peers::loopback;
use common::str0m_client::{ClientEvent, ClientOptions, TestClient};
use smallwebrtc::media::audio::OpusEncoder;
use smallwebrtc::{Peer, PeerEvent, Runtime, RuntimeConfig, TransportProtocol};

const T: Duration = Duration::from_secs(30);

fn tcp_runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        tcp_addr: Some("127.0.0.1:0".parse().unwrap()),
        worker_threads: 2,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// A peer and a str0m client connected over ICE-TCP, the data channel open.
fn connect(rt: &Runtime) -> (Peer, Arc<TestClient>, String) {
    let peer = Peer::with_runtime(rt, loopback(), None).unwrap();
    let mut client = TestClient::new(ClientOptions {
        video: false,
        tcp_server: rt.tcp_addr(),
        ..ClientOptions::default()
    });
    let answer = peer.handle_offer(&client.offer()).unwrap();
    client.accept_answer(&answer).unwrap();
    assert!(
        client
            .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
            .is_some(),
        "the data channel never opened over ICE-TCP: {:?}",
        rt.stats()
    );
    peer.connect().unwrap();
    (peer, Arc::new(client), answer)
}

/// Sends a 20 ms Opus packet of tone every 20 ms until `stop`.
fn send_audio(client: Arc<TestClient>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let mut enc = OpusEncoder::new(48_000, 1, 32_000, 5, true).unwrap();
    let mut pkt = vec![0u8; 4000];
    let pcm = common::str0m_client::tone(440.0, 0, 960, 48_000);
    let n = enc.encode(&pcm, &mut pkt).unwrap();
    pkt.truncate(n);
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            client.send_opus(pkt.clone(), i * 960);
            i += 1;
            let due = start + Duration::from_millis(20 * i);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    })
}

fn wait_until(within: Duration, mut done: impl FnMut() -> bool, what: impl Fn() -> String) {
    let end = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < end, "timed out: {}", what());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until at least `n` more audio packets went each way than `from`.
fn wait_audio(peer: &Peer, client: &TestClient, n: u64) {
    let counts = || {
        (
            peer.stats().unwrap().audio_packets_in,
            client.stats().audio_packets_received,
        )
    };
    let from = counts();
    wait_until(
        T,
        || {
            let now = counts();
            now.0 >= from.0 + n && now.1 >= from.1 + n
        },
        || format!("audio both ways: from {from:?}, now {:?}", counts()),
    );
}

/// App messages both ways: the client's reaches the peer's event queue, the peer's the
/// client's channel.
fn messages_both_ways(peer: &Peer, client: &TestClient, tag: &str) {
    let to_peer = format!("{{\"hello\":\"{tag}\"}}");
    client.send_text(&to_peer);
    let end = Instant::now() + T;
    loop {
        assert!(Instant::now() < end, "the client's message never arrived");
        if let Some(PeerEvent::Message { data, .. }) =
            peer.poll_event(Some(Duration::from_millis(50)))
        {
            if data == to_peer.as_bytes() {
                break;
            }
        }
    }
    let to_client = format!("{{\"back\":\"{tag}\"}}");
    peer.send_message(to_client.as_bytes(), false).unwrap();
    assert!(
        client.wait_message(T, |m| m == to_client).is_some(),
        "the peer's message never arrived"
    );
}

#[test]
fn str0m_client_over_ice_tcp_audio_messages_and_cleanup() {
    let rt = tcp_runtime();
    let tcp = rt.tcp_addr().expect("the runtime listens for ICE-TCP");
    let (peer, client, answer) = connect(&rt);

    // The passive candidate is in every m-section (browsers read the first, aiortc the
    // last), next to the UDP one.
    let m_lines = answer.lines().filter(|l| l.starts_with("m=")).count();
    let host = format!(" 127.0.0.1 {} typ host tcptype passive", tcp.port());
    let tcp_lines = answer
        .lines()
        .filter(|l| l.starts_with("a=candidate:") && l.contains(" tcp ") && l.contains(&host))
        .count();
    assert_eq!(
        tcp_lines, m_lines,
        "a passive TCP candidate in every m-section:\n{answer}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_audio(client.clone(), stop.clone());
    wait_audio(&peer, &client, 50);
    messages_both_ways(&peer, &client, "tcp");

    let net = peer.network_stats().unwrap();
    let pair = net.selected_pair.expect("a selected pair");
    assert_eq!(pair.protocol, TransportProtocol::Tcp, "{pair:?}");
    assert_eq!(pair.local_address, tcp, "{pair:?}");
    let s = rt.stats();
    eprintln!("runtime stats: {s:?}");
    assert_eq!(s.tcp_connections, 1, "{s:?}");
    assert!(s.tcp_frames_in > 50 && s.tcp_frames_out > 50, "{s:?}");
    assert_eq!(
        s.tcp_bad_frames + s.tcp_unknown_ufrag + s.tcp_refused,
        0,
        "{s:?}"
    );

    // The peer closing closes its connection.
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    peer.close().unwrap();
    wait_until(
        T,
        || rt.stats().tcp_connections == 0 && rt.peer_count() == 0,
        || format!("{:?}, {} peers", rt.stats(), rt.peer_count()),
    );
    assert!(
        client
            .wait_for(T, |e| matches!(
                e,
                ClientEvent::ChannelClosed | ClientEvent::Disconnected
            ))
            .is_some(),
        "the client never saw the close"
    );
}

/// RFC 4571: a 2-byte length, then the datagram.
fn frame(data: &[u8]) -> Vec<u8> {
    let mut f = (data.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(data);
    f
}

/// A STUN binding request with `USERNAME` = `user` and a MESSAGE-INTEGRITY that cannot
/// be right (the sender does not know the password).
fn forged_check(user: &str, id: u8) -> Vec<u8> {
    let mut body = Vec::new();
    let mut attr = |kind: u16, value: &[u8]| {
        body.extend_from_slice(&kind.to_be_bytes());
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
        while body.len() % 4 != 0 {
            body.push(0);
        }
    };
    attr(0x0006, user.as_bytes());
    attr(0x0024, &[0x6e, 0x7f, 0x1e, 0xff]);
    attr(0x0008, &[0xab; 20]);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    m.extend_from_slice(&[id; 12]);
    m.extend_from_slice(&body);
    m
}

/// Waits until the server has closed `s` (end of stream or reset).
fn wait_closed(mut s: TcpStream, within: Duration, what: &str) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let end = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return, // reset
        }
        assert!(
            Instant::now() < end,
            "{what}: the server kept the connection open"
        );
    }
}

fn ufrag_of(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .expect("answer has an ice-ufrag")
        .to_owned()
}

#[test]
fn hostile_tcp_connections_are_closed_and_counted_while_a_client_keeps_going() {
    let rt = tcp_runtime();
    let server: SocketAddr = rt.tcp_addr().unwrap();
    let (peer, client, answer) = connect(&rt);
    let ufrag = ufrag_of(&answer);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_audio(client.clone(), stop.clone());
    wait_audio(&peer, &client, 25);
    let base = rt.stats();

    // Garbage that is no STUN check.
    let mut g = TcpStream::connect(server).unwrap();
    g.write_all(&frame(&[0x16, 0xfe, 0xfd, 1, 2, 3, 4, 5]))
        .unwrap();
    wait_closed(g, T, "garbage");
    // A frame longer than any datagram.
    let mut big = TcpStream::connect(server).unwrap();
    let mut f = 0xffffu16.to_be_bytes().to_vec();
    f.extend_from_slice(&[0u8; 4096]);
    big.write_all(&f).unwrap();
    wait_closed(big, T, "oversized frame");
    // A check naming no live peer.
    let mut unknown = TcpStream::connect(server).unwrap();
    unknown
        .write_all(&frame(&forged_check("nosuchpeer:x", 1)))
        .unwrap();
    wait_closed(unknown, T, "unknown ufrag");
    // Checks naming the live peer whose integrity fails: a few are let through to the
    // session (which drops them), then the connection goes.
    let mut forged = TcpStream::connect(server).unwrap();
    for i in 0..10 {
        let _ = forged.write_all(&frame(&forged_check(&format!("{ufrag}:x"), i)));
    }
    wait_closed(forged, T, "forged checks");
    wait_until(
        T,
        || {
            let s = rt.stats();
            s.tcp_bad_frames >= base.tcp_bad_frames + 3
                && s.tcp_unknown_ufrag > base.tcp_unknown_ufrag
        },
        || format!("{:?}", rt.stats()),
    );

    // A flood of connections from one address that never send a check: those over the
    // per-address bound are refused at once, the rest closed at the check deadline.
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(server).unwrap())
        .collect();
    wait_until(
        T,
        || rt.stats().tcp_refused >= base.tcp_refused + 9,
        || format!("{:?}", rt.stats()),
    );
    // The client keeps its audio meanwhile.
    wait_audio(&peer, &client, 25);
    for s in idle {
        wait_closed(s, Duration::from_secs(15), "idle connection");
    }
    let s = rt.stats();
    eprintln!("runtime stats after the hostile connections: {s:?}");
    assert!(
        s.tcp_check_timeouts >= base.tcp_check_timeouts + 31,
        "{s:?}"
    );
    assert_eq!(
        s.tcp_connections, 1,
        "only the client's connection is left: {s:?}"
    );

    // And still talks both ways.
    wait_audio(&peer, &client, 25);
    messages_both_ways(&peer, &client, "after");
    assert!(
        peer.stats().unwrap().datagrams_dropped > 0,
        "the forged checks reached the peer and were dropped"
    );

    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    drop(peer);
    wait_until(
        T,
        || rt.stats().tcp_connections == 0,
        || format!("{:?}", rt.stats()),
    );
}
