//! Floods against a signalling server in a child process with a lowered fd limit (this
//! test binary re-run as the server, so the limit binds only it): 2000 offers that never
//! connect under the usual 1024-fd limit, and idle connections past a 64-fd limit so that
//! `accept` fails with `EMFILE`. During each, a normal client from another source address
//! gets its offer answered within 1 s; the flooder gets 503 with `Retry-After` once its
//! caps are reached; after it, the child is back to its idle fd and thread counts and
//! (within 10 %) its RSS.

mod http_support;
mod signalling_support;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_support::{assert_recovers, connect_from, normal_offers, offer_body, request_from, usage};
use smallwebrtc::signalling::{NewPeer, Server, ServerConfig, ServerLimits};

const CHILD_ENV: &str = "SWRTC_HTTP_FLOOD_CHILD_NOFILE";
/// How long the child's peers wait to connect (none of the flood's ever do).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The child's side: serves until its stdin closes. Does nothing in a normal test run.
#[test]
fn child_server() {
    let Ok(nofile) = std::env::var(CHILD_ENV) else {
        return;
    };
    let n: libc::rlim_t = nofile.parse().unwrap();
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: a valid rlimit value.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        limits: ServerLimits {
            head_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(2),
            ..ServerLimits::default()
        },
        ..ServerConfig::default()
    };
    cfg.peer.connection_timeout = CONNECT_TIMEOUT;
    // The app keeps its peers, as a bot does, and forgets them once closed.
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let on_peer = Arc::new(move |new: NewPeer| {
        let mut h = keep.lock().unwrap();
        h.retain(|p: &Arc<smallwebrtc::Peer>| p.state() != smallwebrtc::PeerState::Closed);
        h.push(new.peer);
    });
    let s = Server::start(cfg, Some(on_peer)).unwrap();
    let forget = held.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        forget
            .lock()
            .unwrap()
            .retain(|p| p.state() != smallwebrtc::PeerState::Closed);
    });
    println!("PORT {}", s.local_addr().port());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
        println!("STATS {:?}", s.http_stats());
        std::io::stdout().flush().unwrap();
        line.clear();
    }
}

struct ChildServer {
    child: Child,
    stdin: ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    addr: SocketAddr,
}

impl ChildServer {
    fn start(nofile: u32) -> ChildServer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_server", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, nofile.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = loop {
            let l = lines.next().expect("the child's port").unwrap();
            if let Some((_, p)) = l.split_once("PORT ") {
                break p.parse::<u16>().unwrap();
            }
        };
        ChildServer {
            child,
            stdin,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The child's HTTP counters.
    fn stats(&mut self) -> String {
        writeln!(self.stdin, "stats").unwrap();
        loop {
            let l = self.lines.next().expect("the child's stats").unwrap();
            if let Some((_, s)) = l.split_once("STATS ") {
                return s.to_owned();
            }
        }
    }

    /// Warms the child up (its runtime starts with the first peer) and returns its idle
    /// usage once that peer has timed out.
    fn warm(&mut self) -> http_support::Usage {
        // Every handler thread and allocator arena in use once, as in any server that
        // has served a little: 100 offers from 4 threads.
        let addr = self.addr;
        let warm: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let src = Ipv4Addr::new(127, 0, 0, 3);
                        request_from(src, addr, "POST", "/api/offer", &offer_body());
                    }
                })
            })
            .collect();
        warm.into_iter().for_each(|w| w.join().unwrap());
        let settle_from = Instant::now() + CONNECT_TIMEOUT;
        let end = settle_from + Duration::from_secs(10);
        let mut last = usage(&self.pid());
        // Settled: the timed-out peer's sockets are gone and the counts hold still.
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = usage(&self.pid());
            let still = now.fds == last.fds && now.threads == last.threads;
            if (still && Instant::now() > settle_from) || Instant::now() > end {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_thousand_offers_under_a_1024_fd_limit() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let mut srv = ChildServer::start(1024);
    let base = srv.warm();
    let addr = srv.addr;
    let (ok, busy, retry_after, other) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let body = Arc::new(offer_body());
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let (ok, busy, retry_after, other, body) = (
                ok.clone(),
                busy.clone(),
                retry_after.clone(),
                other.clone(),
                body.clone(),
            );
            std::thread::spawn(move || {
                for _ in 0..250 {
                    match request_from(Ipv4Addr::LOCALHOST, addr, "POST", "/api/offer", &body) {
                        Some(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        Some(r) if r.status == 503 => {
                            if r.header("Retry-After").is_some() {
                                retry_after.fetch_add(1, Ordering::Relaxed);
                            }
                            busy.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    // Once the flood is under way, the normal client's offers.
    let end = Instant::now() + Duration::from_secs(10);
    while busy.load(Ordering::Relaxed) < 50 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut peak = usage(&srv.pid());
    // Six: the normal client's own peers never connect either, and 8 is its cap too.
    normal_offers(addr, 6, "2000-offer flood");
    for f in flood {
        peak.fds = peak.fds.max(usage(&srv.pid()).fds);
        f.join().unwrap();
    }
    let (ok, busy) = (ok.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    eprintln!(
        "flood: {ok} answered, {busy} refused with 503 ({} with Retry-After), {} other; child peak fds {}; {}",
        retry_after.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
        peak.fds,
        srv.stats()
    );
    assert_eq!(ok + busy, 2000, "every flood offer got 200 or 503");
    assert!(busy > 1000, "the flooder's caps held");
    assert_eq!(retry_after.load(Ordering::Relaxed), busy);
    // The flood's peers time out; the child is back to idle.
    assert_recovers(
        &srv.pid(),
        base,
        CONNECT_TIMEOUT + Duration::from_secs(10),
        "2000-offer flood",
    );
}

#[test]
fn accept_survives_running_out_of_fds() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let mut srv = ChildServer::start(64);
    let base = srv.warm();
    let addr = srv.addr;
    // 120 idle connections from four addresses (30 each, under the per-source cap): far
    // more than the 64 fds allow.
    let idle: Vec<TcpStream> = (0..120)
        .filter_map(|i| connect_from(Ipv4Addr::new(127, 0, 2, 1 + (i % 4) as u8), addr).ok())
        .collect();
    let end = Instant::now() + Duration::from_secs(10);
    while srv.stats().contains("accept_errors: 0,") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = srv.stats();
    assert!(!stats.contains("accept_errors: 0,"), "no EMFILE: {stats}");
    normal_offers(addr, 5, "out of fds");
    eprintln!(
        "out of fds: {} idle connections, {}",
        idle.len(),
        srv.stats()
    );
    drop(idle);
    assert_recovers(
        &srv.pid(),
        base,
        CONNECT_TIMEOUT + Duration::from_secs(10),
        "out of fds",
    );
    // Still listening and answering.
    normal_offers(addr, 1, "after running out of fds");
}
