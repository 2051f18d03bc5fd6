//! A user-space impairment relay and the network namespaces of the fault suite.
//!
//! The kernels we run on have no netem qdisc, so the path between client and server is
//! impaired here instead: a UDP relay forwards every datagram between the client and the
//! server and, in each direction separately, drops (seeded random loss), delays with
//! jitter (reordering or not), enforces a path MTU and caps the rate (a bounded
//! bottleneck queue that drops what does not fit). Each direction counts what it did, so
//! a test can check the impairment really happened.
//!
//! The client is pointed at the relay through the server's advertised address
//! (`PeerConfig::public_ip`, same port as the server's socket): the relay listens on that
//! port at its client-side address and sends on to the server from its own socket.
//!
//! [`FaultNet`] builds three namespaces, client ⟷ relay ⟷ server, joined by veth pairs
//! with no routing between client and server, so the relay is the only path.

use std::collections::BinaryHeap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What one direction of the relay does to the datagrams it forwards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Random loss in percent (0–100), drawn from a seeded generator.
    pub loss_percent: f64,
    /// Fixed one-way delay added to every datagram.
    pub delay: Duration,
    /// Each datagram's delay is `delay` ± up to `jitter` (uniform).
    pub jitter: Duration,
    /// With jitter: let a datagram overtake an earlier one whose delay came out longer.
    /// Without, datagrams leave in arrival order (jitter then only bunches them).
    pub reorder: bool,
    /// Path MTU in bytes: a datagram whose IP packet (payload + 28 bytes of IPv4/UDP
    /// headers, 48 for IPv6) is larger is dropped, as a link that does not fragment does.
    pub mtu: Option<usize>,
    /// Bottleneck rate in bit/s (payload + headers): datagrams queue behind each other.
    pub rate_bps: Option<u64>,
    /// Longest a datagram may wait in the bottleneck queue; beyond it is dropped
    /// (a bounded router queue). Only with `rate_bps`.
    pub queue: Duration,
    /// Seed of the loss and jitter generator.
    pub seed: u64,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            loss_percent: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: false,
            mtu: None,
            rate_bps: None,
            queue: Duration::from_millis(200),
            seed: 0x0dd_f00d_5eed_0001,
        }
    }
}

impl Impairment {
    pub fn loss(percent: f64) -> Impairment {
        Impairment {
            loss_percent: percent,
            ..Impairment::default()
        }
    }
}

/// What one direction did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams received from the sending side.
    pub received: u64,
    /// Datagrams sent on to the other side.
    pub forwarded: u64,
    /// Payload bytes sent on.
    pub bytes_forwarded: u64,
    /// Dropped by random loss (or by a blackout, see [`Relay::set_blackout`]).
    pub dropped_loss: u64,
    /// Dropped for being over the MTU.
    pub dropped_mtu: u64,
    /// Dropped because the bottleneck queue was full.
    pub dropped_rate: u64,
    /// Largest UDP payload received (before any drop), in bytes.
    pub max_payload: u64,
    /// Datagrams that left before one that arrived earlier.
    pub reordered: u64,
}

#[derive(Default)]
struct AtomicCounters {
    received: AtomicU64,
    forwarded: AtomicU64,
    bytes_forwarded: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_mtu: AtomicU64,
    dropped_rate: AtomicU64,
    max_payload: AtomicU64,
    reordered: AtomicU64,
}

impl AtomicCounters {
    fn snapshot(&self) -> Counters {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            received: g(&self.received),
            forwarded: g(&self.forwarded),
            bytes_forwarded: g(&self.bytes_forwarded),
            dropped_loss: g(&self.dropped_loss),
            dropped_mtu: g(&self.dropped_mtu),
            dropped_rate: g(&self.dropped_rate),
            max_payload: g(&self.max_payload),
            reordered: g(&self.reordered),
        }
    }
}

fn add(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Direction of travel through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

struct DirState {
    imp: Mutex<Impairment>,
    /// Bumped on every `set`, so the forwarding thread re-seeds from the new settings.
    generation: AtomicU32,
    blackout: AtomicBool,
    counters: AtomicCounters,
}

struct Shared {
    dirs: [DirState; 2],
    stop: AtomicBool,
    /// Where the client was last heard from (the down direction sends there).
    client: Mutex<Option<SocketAddr>>,
}

/// A running relay; stops and joins its threads on drop.
pub struct Relay {
    listen: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Listens for the client at `listen`, sends on to `server` from a socket bound to
    /// `via` (any port). Sockets are created in the calling thread's network namespace.
    pub fn start(
        listen: SocketAddr,
        via: IpAddr,
        server: SocketAddr,
        up: Impairment,
        down: Impairment,
    ) -> io::Result<Relay> {
        let client_side = UdpSocket::bind(listen)?;
        let server_side = UdpSocket::bind(SocketAddr::new(via, 0))?;
        let dir = |imp| DirState {
            imp: Mutex::new(imp),
            generation: AtomicU32::new(0),
            blackout: AtomicBool::new(false),
            counters: AtomicCounters::default(),
        };
        let shared = Arc::new(Shared {
            dirs: [dir(up), dir(down)],
            stop: AtomicBool::new(false),
            client: Mutex::new(None),
        });
        let up_thread = {
            let rx = client_side.try_clone()?;
            let tx = server_side.try_clone()?;
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("impair-up".into())
                .spawn(move || forward(Dir::Up, rx, tx, &shared, Some(server)))?
        };
        let down_thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("impair-down".into())
                .spawn(move || forward(Dir::Down, server_side, client_side, &shared, None))?
        };
        Ok(Relay {
            listen,
            shared,
            threads: vec![up_thread, down_thread],
        })
    }

    /// The client-facing address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Changes one direction's impairment from now on (queued datagrams keep their times).
    pub fn set(&self, dir: Dir, imp: Impairment) {
        let d = &self.shared.dirs[dir as usize];
        *d.imp.lock().unwrap() = imp;
        d.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops everything in both directions (a client that vanished) while `on`.
    pub fn set_blackout(&self, on: bool) {
        for d in &self.shared.dirs {
            d.blackout.store(on, Ordering::Relaxed);
        }
    }

    pub fn counters(&self, dir: Dir) -> Counters {
        self.shared.dirs[dir as usize].counters.snapshot()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One queued datagram; the heap pops the earliest `due` (then the earliest arrival).
struct Queued {
    due: Instant,
    seq: u64,
    data: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        self.due == o.due && self.seq == o.seq
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

/// SplitMix64: small, seeded, good enough for loss and jitter draws.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn forward(dir: Dir, rx: UdpSocket, tx: UdpSocket, shared: &Shared, to: Option<SocketAddr>) {
    let state = &shared.dirs[dir as usize];
    let c = &state.counters;
    let mut imp = *state.imp.lock().unwrap();
    let mut generation = state.generation.load(Ordering::Relaxed);
    let mut rng = Rng(imp.seed);
    let mut queue = BinaryHeap::<Queued>::new();
    // When the bottleneck link finishes sending what is queued on it.
    let mut link_free = Instant::now();
    // Latest departure time given so far (keeps order when `reorder` is off).
    let mut last_due = Instant::now();
    let mut seq = 0u64;
    let mut last_sent_seq = 0u64;
    let mut buf = vec![0u8; 65536];
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while queue.peek().is_some_and(|q| q.due <= now) {
            let q = queue.pop().unwrap();
            let dest = match to {
                Some(a) => Some(a),
                None => *shared.client.lock().unwrap(),
            };
            if let Some(dest) = dest {
                if tx.send_to(&q.data, dest).is_ok() {
                    add(&c.forwarded);
                    c.bytes_forwarded
                        .fetch_add(q.data.len() as u64, Ordering::Relaxed);
                }
            }
            if q.seq < last_sent_seq {
                add(&c.reordered);
            }
            last_sent_seq = last_sent_seq.max(q.seq);
        }
        let wait = queue
            .peek()
            .map(|q| q.due.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(20))
            .clamp(Duration::from_micros(200), Duration::from_millis(20));
        let _ = rx.set_read_timeout(Some(wait));
        let (n, from) = match rx.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue, // timeout: send what is due
        };
        let now = Instant::now();
        let g = state.generation.load(Ordering::Relaxed);
        if g != generation {
            generation = g;
            imp = *state.imp.lock().unwrap();
            rng = Rng(imp.seed ^ u64::from(g));
        }
        if dir == Dir::Up {
            *shared.client.lock().unwrap() = Some(from);
        }
        add(&c.received);
        c.max_payload.fetch_max(n as u64, Ordering::Relaxed);
        let header = if from.is_ipv4() { 28 } else { 48 };
        // Draw for every datagram, so a seed gives the same pattern whatever else happens.
        let lost = rng.unit() * 100.0 < imp.loss_percent;
        let jitter_draw = rng.unit() * 2.0 - 1.0;
        if state.blackout.load(Ordering::Relaxed) || lost {
            add(&c.dropped_loss);
            continue;
        }
        if imp.mtu.is_some_and(|mtu| n + header > mtu) {
            add(&c.dropped_mtu);
            continue;
        }
        let mut depart = now;
        if let Some(rate) = imp.rate_bps.filter(|r| *r > 0) {
            let start = link_free.max(now);
            if start.saturating_duration_since(now) > imp.queue {
                add(&c.dropped_rate);
                continue;
            }
            let bits = ((n + header) * 8) as f64;
            link_free = start + Duration::from_secs_f64(bits / rate as f64);
            depart = link_free;
        }
        let delay = imp.delay.as_secs_f64() + imp.jitter.as_secs_f64() * jitter_draw;
        let mut due = depart + Duration::from_secs_f64(delay.max(0.0));
        if !imp.reorder {
            due = due.max(last_due);
        }
        last_due = last_due.max(due);
        seq += 1;
        queue.push(Queued {
            due,
            seq,
            data: buf[..n].to_vec(),
        });
    }
}

/// Three network namespaces, client ⟷ relay ⟷ server, deleted on drop.
///
/// Client `10.0.1.2` — `10.0.1.1` relay `10.0.2.1` — `10.0.2.2` server. The relay
/// namespace does not forward, so the client reaches the server only through a [`Relay`]
/// running in the relay namespace. Names start with `flt` and carry the process id and a
/// counter, so parallel tests and runs never collide.
pub struct FaultNet {
    pub client_ns: String,
    pub relay_ns: String,
    pub server_ns: String,
}

pub const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2));
pub const RELAY_CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1));
pub const RELAY_SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1));
pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl FaultNet {
    /// Builds the namespaces; panics with the reason when it cannot (the fault suite needs
    /// root, or CAP_NET_ADMIN, and iproute2).
    pub fn new() -> FaultNet {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("flt{}-{n}", std::process::id());
        let net = FaultNet {
            client_ns: format!("{base}c"),
            relay_ns: format!("{base}r"),
            server_ns: format!("{base}s"),
        };
        if let Err(e) = net.build() {
            panic!("fault suite: cannot build network namespaces (run as root with iproute2): {e}");
        }
        net
    }

    fn build(&self) -> Result<(), String> {
        let (c, r, s) = (&self.client_ns, &self.relay_ns, &self.server_ns);
        for ns in [c, r, s] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // Created inside the namespaces, so the short names never meet the host's.
        ip(&[
            "-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", "toc", "netns", r,
        ])?;
        ip(&[
            "-n", s, "link", "add", "eth0", "type", "veth", "peer", "name", "tos", "netns", r,
        ])?;
        for (ns, dev, addr) in [
            (c, "eth0", "10.0.1.2/24"),
            (r, "toc", "10.0.1.1/24"),
            (r, "tos", "10.0.2.1/24"),
            (s, "eth0", "10.0.2.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// Runs `f` on a new thread inside namespace `ns` and returns its result. Sockets
    /// created there stay in `ns` whichever thread uses them later, and threads spawned by
    /// `f` start in `ns` too.
    pub fn run_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// A command that runs inside namespace `ns` (`ip netns exec`).
    pub fn command_in(ns: &str, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }

    /// Starts a relay in the relay namespace, listening at `RELAY_CLIENT_IP:port` (the
    /// server's port, as advertised through `public_ip`) and forwarding to `server`.
    pub fn relay(&self, port: u16, server: SocketAddr, up: Impairment, down: Impairment) -> Relay {
        FaultNet::run_in(&self.relay_ns, move || {
            Relay::start(
                SocketAddr::new(RELAY_CLIENT_IP, port),
                RELAY_SERVER_IP,
                server,
                up,
                down,
            )
            .expect("start the impairment relay")
        })
    }
}

fn enter(path: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
}

impl Drop for FaultNet {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends too.
        for ns in [&self.client_ns, &self.relay_ns, &self.server_ns] {
            let _ = ip(&["netns", "delete", ns]);
        }
    }
}
