//! Hostile clients against the signalling server, each on real loopback sockets: stalled
//! bodies, unfinished chunked bodies, `Expect: 100-continue` with no body, pipelined
//! requests whose replies are never read, endless header lines, 1000 idle connections.
//! During each, a normal client from another source address gets its offer answered
//! within 1 s; after it, the process is back to its fd and thread counts and (within 10 %)
//! its RSS. And `Server::stop` / `swrtc_server_free` return at once with a client stalled
//! mid-body. Tests run one at a time (they count the process's fds and threads).

mod http_support;
mod signalling_support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http_support::{assert_recovers, closed_by_server, connect_from, normal_offers, usage, Usage};
use smallwebrtc::signalling::{NewPeer, Server, ServerConfig, ServerLimits};

const ATTACKER: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Deadlines short enough to keep the suite quick, long enough for the normal client's
/// offers to run while every attack connection is still held.
const DEADLINE: Duration = Duration::from_secs(2);

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A server whose new peers the app drops at once (they close), after one offer that warms
/// up the runtime; and the process usage with it idle.
fn server() -> (Server, Usage) {
    server_with(DEADLINE)
}

fn server_with(deadline: Duration) -> (Server, Usage) {
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        limits: ServerLimits {
            head_timeout: deadline,
            body_timeout: deadline,
            idle_timeout: deadline,
            write_timeout: deadline,
            ..ServerLimits::default()
        },
        ..ServerConfig::default()
    };
    let s = Server::start(cfg, Some(Arc::new(|new: NewPeer| drop(new.peer)))).unwrap();
    normal_offers(s.local_addr(), 2, "warm-up");
    // The warm-up peers close on the I/O thread shortly after.
    let end = Instant::now() + Duration::from_secs(5);
    while !s.registry().pc_ids().is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let base = usage("self");
    (s, base)
}

/// `n` attack connections from 127.0.0.1 that each send `payload` and then nothing.
/// Past the per-source cap (32) the server answers 503 and closes them.
fn stall(addr: SocketAddr, n: usize, payload: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut c = connect_from(ATTACKER, addr).unwrap();
            let _ = c.write_all(payload);
            c
        })
        .collect()
}

/// The common shape: attack, normal offers during it, the server ends the attack
/// connections itself by its deadlines, the process recovers.
fn stall_attack(what: &str, payload: &[u8]) {
    let _one = one_at_a_time();
    let (s, base) = server();
    let mut attackers = stall(s.local_addr(), 40, payload);
    let during = usage("self");
    normal_offers(s.local_addr(), 5, what);
    let stats = s.http_stats();
    assert!(
        stats.refused >= 8,
        "{what}: past the per-source cap: {stats:?}"
    );
    for (i, c) in attackers.iter_mut().enumerate() {
        assert!(
            closed_by_server(c, DEADLINE * 3),
            "{what}: attack connection {i} still open after its deadline"
        );
    }
    assert_eq!(
        during.threads, base.threads,
        "{what}: no thread per connection"
    );
    drop(attackers);
    assert_recovers("self", base, Duration::from_secs(5), what);
}

#[test]
fn stalled_body() {
    stall_attack(
        "stalled body",
        b"POST /api/offer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{\"sdp\":",
    );
}

#[test]
fn unfinished_chunked_body() {
    stall_attack(
        "unfinished chunked body",
        b"POST /api/offer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          10\r\n{\"sdp\": \"v=0\\r\\n",
    );
}

#[test]
fn expect_100_continue_without_body() {
    let _one = one_at_a_time();
    let (s, base) = server();
    let mut attackers = stall(
        s.local_addr(),
        20,
        b"POST /api/offer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4000\r\n\r\n",
    );
    for c in &mut attackers {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut interim = [0u8; 25];
        c.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    normal_offers(s.local_addr(), 5, "100-continue without body");
    for c in &mut attackers {
        assert!(closed_by_server(c, DEADLINE * 3));
    }
    drop(attackers);
    // Announcing a body over the limit is refused before it is sent.
    let mut big = connect_from(ATTACKER, s.local_addr()).unwrap();
    big.write_all(
        b"POST /api/offer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
    )
    .unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 12];
    big.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    drop(big);
    assert_recovers("self", base, Duration::from_secs(5), "100-continue");
}

#[test]
fn pipelined_requests_whose_replies_are_never_read() {
    let _one = one_at_a_time();
    let (s, base) = server();
    // Each asks for the 15 kB page 2000 times: 30 MB of replies, far more than the socket
    // buffers hold, so the server's writes block until its write deadline.
    let payload = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
    let attackers = stall(s.local_addr(), 20, &payload);
    normal_offers(s.local_addr(), 5, "pipelined, replies never read");
    let end = Instant::now() + DEADLINE * 5;
    while s.http_stats().timed_out < 20 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = s.http_stats();
    assert!(stats.timed_out >= 20, "write deadline: {stats:?}");
    drop(attackers);
    assert_recovers("self", base, Duration::from_secs(5), "pipelined");
}

#[test]
fn endless_header_lines() {
    let _one = one_at_a_time();
    let (s, base) = server();
    let addr = s.local_addr();
    // Four clients each try to send a 32 MB header line.
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = connect_from(ATTACKER, addr).unwrap();
                let _ = c.write_all(b"GET / HTTP/1.1\r\nX-Endless: ");
                let chunk = vec![b'a'; 64 * 1024];
                let mut sent = 0usize;
                while sent < 32 << 20 {
                    match c.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                }
                sent
            })
        })
        .collect();
    normal_offers(addr, 5, "endless header lines");
    for a in attackers {
        let sent = a.join().unwrap();
        assert!(sent < 32 << 20, "the server read a whole 32 MB header line");
    }
    let r = http_support::request_from(
        ATTACKER,
        addr,
        "GET",
        &format!("/?{}", "a".repeat(20_000)),
        b"",
    )
    .expect("an answer");
    assert_eq!(r.status, 431);
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let mut c = connect_from(ATTACKER, addr).unwrap();
    write!(c, "GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").unwrap();
    let mut head = [0u8; 12];
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 431");
    drop(c);
    assert_recovers("self", base, Duration::from_secs(5), "endless headers");
}

#[test]
fn a_thousand_idle_connections() {
    let _one = one_at_a_time();
    // Deadlines longer than the 1000 connects take on a busy machine, so they stay idle.
    let (s, base) = server_with(Duration::from_secs(20));
    // From eight addresses, 125 each: 32 per address are held (256, the overall cap), the
    // rest refused with 503; the normal client's connection makes room by closing the
    // oldest idle one.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|i| connect_from(Ipv4Addr::new(127, 0, 1, 1 + (i % 8) as u8), s.local_addr()).unwrap())
        .collect();
    let end = Instant::now() + Duration::from_secs(10);
    while s.http_stats().accepted + s.http_stats().refused < 1000 + 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let during = usage("self");
    let stats = s.http_stats();
    eprintln!("1000 idle: {stats:?}, usage {during:?}");
    assert!(stats.open <= 256, "{stats:?}");
    assert!(stats.refused >= 1000 - 256, "{stats:?}");
    assert_eq!(during.threads, base.threads, "no thread per connection");
    normal_offers(s.local_addr(), 5, "1000 idle connections");
    drop(idle);
    assert_recovers("self", base, Duration::from_secs(5), "1000 idle");
}

#[test]
fn stop_returns_at_once_with_a_client_stalled_mid_body() {
    let _one = one_at_a_time();
    let (s, _) = server();
    let mut stalled = connect_from(ATTACKER, s.local_addr()).unwrap();
    stalled
        .write_all(b"POST /api/offer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{")
        .unwrap();
    let t = Instant::now();
    s.stop();
    let took = t.elapsed();
    eprintln!("Server::stop with a stalled client took {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(closed_by_server(&mut stalled, Duration::from_secs(1)));
}

#[test]
fn swrtc_server_free_returns_at_once_with_a_client_stalled_mid_body() {
    use smallwebrtc::ffi::*;
    let _one = one_at_a_time();
    let addr = std::ffi::CString::new("127.0.0.1:0").unwrap();
    let mut cfg = std::mem::MaybeUninit::<SwrtcServerConfig>::uninit();
    // SAFETY: a writable config, then the C calls with valid pointers, as the header says.
    let server = unsafe {
        swrtc_server_config_default(cfg.as_mut_ptr());
        let mut cfg = cfg.assume_init();
        cfg.addr = addr.as_ptr();
        let mut server = std::ptr::null_mut();
        let r = swrtc_server_new(std::ptr::null(), &cfg, std::ptr::null(), &mut server);
        assert_eq!(r as i32, 0);
        server
    };
    let mut port = 0u16;
    // SAFETY: a live server and a writable port.
    unsafe { swrtc_server_local_port(server, &mut port) };
    let dst: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut stalled = connect_from(ATTACKER, dst).unwrap();
    stalled
        .write_all(b"POST /api/offer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{")
        .unwrap();
    // Let the server take the connection in, so the stall is really mid-body.
    let _ = http_support::request_from(ATTACKER, dst, "GET", "/", b"");
    let t = Instant::now();
    // SAFETY: the server from swrtc_server_new, freed once.
    unsafe { swrtc_server_free(server) };
    let took = t.elapsed();
    eprintln!("swrtc_server_free with a stalled client took {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(closed_by_server(&mut stalled, Duration::from_secs(1)));
}
