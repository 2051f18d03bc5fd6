//! One UDP port for every peer of a runtime (`RuntimeConfig::udp_addr`), over real sockets
//! with real clients: 100 sessions (99 str0m clients and one aiortc) on one port with audio
//! both ways; datagrams from strangers (garbage, checks naming no peer, forged checks naming
//! a live one) dropped and counted while the sessions go on; a client whose NAT moves it to
//! a new port mid-call keeps its audio; every binding gone once the peers close.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use common::nat::Nat;
use common::peers::{loopback, open_str0m};
use common::str0m_client::{ClientEvent, ClientOptions, TestClient};
use serde_json::json;
use smallwebrtc::media::audio::OpusEncoder;
use smallwebrtc::{Peer, Runtime, RuntimeConfig, RuntimeStats};

const T: Duration = Duration::from_secs(30);

fn shared_runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        udp_addr: Some("127.0.0.1:0".parse().unwrap()),
        worker_threads: 2,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn audio_client() -> TestClient {
    TestClient::new(ClientOptions {
        video: false,
        ..ClientOptions::default()
    })
}

/// One 20 ms Opus packet of tone, sent again and again (the server decodes each).
fn opus_packet() -> Vec<u8> {
    let mut enc = OpusEncoder::new(48_000, 1, 32_000, 5, true).unwrap();
    let mut out = vec![0u8; 4000];
    let pcm = common::str0m_client::tone(440.0, 0, 960, 48_000);
    let n = enc.encode(&pcm, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Sends a packet from every client every 20 ms until `stop`.
fn send_audio(clients: Vec<Arc<TestClient>>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let pkt = opus_packet();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for c in &clients {
                c.send_opus(pkt.clone(), i * 960);
            }
            i += 1;
            let due = start + Duration::from_millis(20 * i);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    })
}

/// Waits until `done` holds, polling every 50 ms; panics with `what()` after `within`.
fn wait_until(within: Duration, mut done: impl FnMut() -> bool, what: impl Fn() -> String) {
    let end = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < end, "timed out: {}", what());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Mic packets the peer received, and audio packets its client received.
fn audio_counts(peer: &Peer, client: &TestClient) -> (u64, u64) {
    (
        peer.stats().unwrap().audio_packets_in,
        client.stats().audio_packets_received,
    )
}

/// Waits until every pair has moved at least `n` audio packets each way past `from`.
fn wait_audio_both_ways(pairs: &[(Peer, Arc<TestClient>)], from: &[(u64, u64)], n: u64) {
    wait_audio_within(T, pairs, from, n)
}

fn wait_audio_within(
    within: Duration,
    pairs: &[(Peer, Arc<TestClient>)],
    from: &[(u64, u64)],
    n: u64,
) {
    wait_until(
        within,
        || {
            pairs.iter().zip(from).all(|((p, c), &(pin, cin))| {
                let (a, b) = audio_counts(p, c);
                a >= pin + n && b >= cin + n
            })
        },
        || {
            let behind: Vec<_> = pairs
                .iter()
                .zip(from)
                .enumerate()
                .filter_map(|(i, ((p, c), f))| {
                    let now = audio_counts(p, c);
                    (now.0 < f.0 + n || now.1 < f.1 + n).then_some((i, *f, now))
                })
                .collect();
            format!(
                "{} pairs behind (index, before, now): {behind:?}",
                behind.len()
            )
        },
    );
}

fn ufrag_of(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .expect("answer has an ice-ufrag")
        .to_owned()
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

fn stats_delta(a: RuntimeStats, b: RuntimeStats) -> (u64, u64) {
    (
        b.udp_dropped_unknown_ufrag - a.udp_dropped_unknown_ufrag,
        b.udp_dropped_unbound - a.udp_dropped_unbound,
    )
}

#[test]
fn a_hundred_peers_share_one_udp_port_with_audio_both_ways() {
    let rt = shared_runtime();
    let port = rt.udp_addrs().to_vec();
    assert_eq!(port.len(), 1);
    let mut pairs = Vec::new();
    for _ in 0..99 {
        let peer = Peer::with_runtime(&rt, loopback(), None).unwrap();
        assert_eq!(
            peer.local_addrs(),
            &port[..],
            "every peer is on the one port"
        );
        let mut client = audio_client();
        open_str0m(&mut client, &peer, T);
        pairs.push((peer, Arc::new(client)));
    }
    let mut aio = AiortcPeer::spawn();
    let aio_peer = Peer::with_runtime(&rt, loopback(), None).unwrap();
    let offer = aio.offer(json!({"audio": true, "video": false, "tone_hz": 440}));
    let answer = aio_peer.handle_offer(&offer).unwrap();
    assert!(answer.contains(&format!("127.0.0.1 {} typ host", port[0].port())));
    aio.answer(&answer);
    aio.wait_channel_open(T);
    aio_peer.connect().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_audio(pairs.iter().map(|(_, c)| c.clone()).collect(), stop.clone());
    let before: Vec<_> = pairs.iter().map(|(p, c)| audio_counts(p, c)).collect();
    // Two seconds of audio each way on every str0m session, and on the aiortc one.
    wait_audio_both_ways(&pairs, &before, 100);
    let aio_before = aio.audio_stats()["frames"].as_u64().unwrap_or(0);
    aio.wait_audio(T, |s| s["frames"].as_u64().unwrap_or(0) >= aio_before + 100);
    wait_until(
        T,
        || aio_peer.stats().unwrap().audio_packets_in >= 100,
        || format!("{:?}", aio_peer.stats()),
    );
    let s = rt.stats();
    eprintln!("runtime stats with 100 sessions: {s:?}");
    assert!(s.udp_bindings >= 100, "{s:?}");
    assert_eq!(
        s.udp_dropped_unknown_ufrag, 0,
        "no check went astray: {s:?}"
    );

    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    aio.close();
    drop(aio_peer);
    for (peer, _) in pairs.drain(..) {
        drop(peer);
    }
    // Closed peers leave no binding behind.
    wait_until(
        T,
        || rt.stats().udp_bindings == 0 && rt.peer_count() == 0,
        || format!("{:?}, {} peers", rt.stats(), rt.peer_count()),
    );
}

#[test]
fn strangers_are_dropped_and_counted_while_sessions_go_on() {
    let rt = shared_runtime();
    let server = rt.udp_addrs()[0];
    let mut pairs = Vec::new();
    let mut ufrag = String::new();
    for _ in 0..2 {
        let peer = Peer::with_runtime(&rt, loopback(), None).unwrap();
        let mut client = audio_client();
        let answer = peer.handle_offer(&client.offer()).unwrap();
        ufrag = ufrag_of(&answer);
        client.accept_answer(&answer).unwrap();
        assert!(client
            .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
            .is_some());
        peer.connect().unwrap();
        pairs.push((peer, Arc::new(client)));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_audio(pairs.iter().map(|(_, c)| c.clone()).collect(), stop.clone());
    let before: Vec<_> = pairs.iter().map(|(p, c)| audio_counts(p, c)).collect();
    wait_audio_both_ways(&pairs, &before, 50);

    let base = rt.stats();
    let last_dropped = pairs[1].0.stats().unwrap().datagrams_dropped;
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = 0x1234_5678_9abc_def0_u64;
    for i in 0..60u32 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut junk = rng.to_le_bytes().repeat(1 + (i as usize % 20));
        // Look like DTLS, RTP and a STUN response in turn: none is a check.
        junk[0] = [22, 0x80, 1][i as usize % 3];
        stranger.send_to(&junk, server).unwrap();
    }
    for i in 0..20 {
        stranger
            .send_to(&forged_check("nosuchpeer:x", i), server)
            .unwrap();
    }
    // Checks naming a live peer reach it, fail its integrity check, and bind nothing.
    for i in 0..10 {
        stranger
            .send_to(&forged_check(&format!("{ufrag}:x"), i), server)
            .unwrap();
    }
    wait_until(
        T,
        || {
            let (unknown, unbound) = stats_delta(base, rt.stats());
            unknown >= 20 && unbound >= 60
        },
        || format!("{base:?} → {:?}", rt.stats()),
    );
    wait_until(
        T,
        || pairs[1].0.stats().unwrap().datagrams_dropped >= last_dropped + 10,
        || format!("{:?}", pairs[1].0.stats()),
    );
    let after = rt.stats();
    assert_eq!(
        after.udp_bindings, base.udp_bindings,
        "a stranger got bound"
    );
    // The sessions carry on: two more seconds of audio each way.
    let mid: Vec<_> = pairs.iter().map(|(p, c)| audio_counts(p, c)).collect();
    wait_audio_both_ways(&pairs, &mid, 100);
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
}

#[test]
fn a_client_whose_nat_rebinds_mid_call_keeps_its_audio() {
    let rt = shared_runtime();
    let server = rt.udp_addrs()[0];
    let nat = Nat::start(server);
    let peer = Peer::with_runtime(&rt, loopback(), None).unwrap();
    let mut client = audio_client();
    // The server learns the client only through the NAT (a peer-reflexive address): no
    // client candidates in the offer, and the client reaches the server at the NAT.
    let offer: String = client
        .offer()
        .lines()
        .filter(|l| !l.starts_with("a=candidate"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let answer = peer.handle_offer(&offer).unwrap();
    let direct = format!("127.0.0.1 {} typ host", server.port());
    assert!(answer.contains(&direct), "{answer}");
    let answer = answer.replace(
        &direct,
        &format!("127.0.0.1 {} typ host", nat.inner_addr.port()),
    );
    client.accept_answer(&answer).unwrap();
    assert!(client
        .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
        .is_some());
    peer.connect().unwrap();
    let pairs = vec![(peer, Arc::new(client))];
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_audio(vec![pairs[0].1.clone()], stop.clone());
    let start = vec![audio_counts(&pairs[0].0, &pairs[0].1)];
    wait_audio_both_ways(&pairs, &start, 50);
    let first = nat.outer_addr();
    let selected = pairs[0].0.network_stats().unwrap();
    eprintln!("before rebinding: {first} {:?}", selected.selected_pair);

    let base = rt.stats();
    nat.rebind();
    let second = nat.outer_addr();
    assert_ne!(first, second);
    let t0 = Instant::now();
    let mid = vec![audio_counts(&pairs[0].0, &pairs[0].1)];
    // Three seconds of audio each way after the move, well before ICE alone would give
    // the old pair up and switch (about 20 s): the client's next check (str0m checks at
    // least every 3 s) binds the new address, and our audio follows it 1 s later.
    wait_audio_within(Duration::from_secs(15), &pairs, &mid, 150);
    let after = rt.stats();
    eprintln!(
        "rebinding: audio both ways again after {:?}; {base:?} → {after:?}; pair {:?}",
        t0.elapsed(),
        pairs[0].0.network_stats().unwrap().selected_pair
    );
    // The move really went through the unbound path, and the new address got bound.
    assert!(
        after.udp_dropped_unbound > base.udp_dropped_unbound,
        "{after:?}"
    );
    assert!(after.udp_bindings >= 1, "{after:?}");
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
}

#[test]
fn the_echo_example_serves_every_client_on_its_udp_port() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let echo = common::echo_example();
    let mut child = Command::new(echo)
        // No --udp-port: sharing one port is the example's default.
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the echo example starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut line = String::new();
    while lines.len() < 3 && out.read_line(&mut line).unwrap() > 0 {
        lines.push(std::mem::take(&mut line));
    }
    let last_word = |prefix: &str| -> SocketAddr {
        lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.trim().rsplit(' ').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} line in {lines:?}"))
    };
    let http = last_word("echo bot listening on");
    let udp = last_word("every peer on UDP");
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = audio_client();
        let answer = common::offer::post_offer(http, &c.offer());
        let sdp = answer["sdp"].as_str().unwrap();
        assert!(
            sdp.contains(&format!("127.0.0.1 {} typ host", udp.port())),
            "client {i} not on the shared port: {sdp}"
        );
        c.accept_answer(sdp).unwrap();
        assert!(c
            .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
            .is_some());
        clients.push(c);
    }
    for (i, c) in clients.iter().enumerate() {
        let text = format!("{{\"hello\":{i}}}");
        c.send_text(&text);
        assert!(
            c.wait_message(T, |m| m.contains("echo") && m.contains(&text))
                .is_some(),
            "client {i} got no echo"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_shared_port_over_the_c_abi() {
    use smallwebrtc::ffi::*;
    use std::ptr::{null, null_mut};
    // SAFETY: every pointer is NULL, a live local, or a runtime from swrtc_runtime_new.
    unsafe {
        let mut c = std::mem::zeroed::<SwrtcRuntimeConfig>();
        assert_eq!(swrtc_runtime_config_default(&mut c), SWRTC_OK);
        assert!(!c.udp_shared && c.udp_ip.is_null() && c.udp_port == 0);
        c.udp_shared = true;
        c.udp_ip = c"not-an-ip".as_ptr();
        let mut rt: *mut SwrtcRuntime = null_mut();
        assert_eq!(swrtc_runtime_new(&c, &mut rt), SWRTC_ERR_INVALID_ARGUMENT);
        assert!(rt.is_null());
        // A port someone already holds: a clear I/O error, no runtime.
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.udp_ip = c"127.0.0.1".as_ptr();
        c.udp_port = taken.local_addr().unwrap().port();
        assert_eq!(swrtc_runtime_new(&c, &mut rt), SWRTC_ERR_IO);
        assert!(rt.is_null());
        drop(taken);
        // A port of our choice (free a moment ago).
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        c.udp_port = port;
        assert_eq!(swrtc_runtime_new(&c, &mut rt), SWRTC_OK);
        let mut s = SwrtcRuntimeStats::default();
        assert_eq!(
            swrtc_runtime_stats(rt, null_mut()),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            swrtc_runtime_stats(null(), &mut s),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        assert_eq!(swrtc_runtime_stats(rt, &mut s), SWRTC_OK);
        assert_eq!((s.udp_bindings, s.udp_dropped_unbound), (0, 0));
        // Datagrams from nobody are dropped and counted.
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..5 {
            stranger.send_to(b"\x16hello", ("127.0.0.1", port)).unwrap();
        }
        let read = || {
            let mut s = SwrtcRuntimeStats::default();
            assert_eq!(swrtc_runtime_stats(rt, &mut s), SWRTC_OK);
            s
        };
        wait_until(
            T,
            || read().udp_dropped_unbound == 5,
            || format!("{:?}", read()),
        );
        swrtc_runtime_free(rt);
    }
}
