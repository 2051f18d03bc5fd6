//! The runtime: I/O threads (mio + str0m sessions), the callback dispatcher and the codec
//! worker pool, plus the process-wide default runtime created on first use.
//!
//! The modules form a stack; each imports only from the layers below it (check: grep the
//! `use super::` and `crate::runtime::` lines in `src/runtime`, and this file's `use`s):
//!
//! 1. `callback`, `workers`, `bitrate`, `demux`: leaves, nothing else of the runtime;
//!    `tcp` (the ICE-TCP port) on `demux` only.
//! 2. `sink` (frame callbacks) and `shared` (what a peer handle and its I/O thread share)
//!    on `callback`.
//! 3. `command`: what reaches an I/O thread (commands, the handle, a new peer), on `shared`
//!    only (a new peer carries its shared state).
//! 4. `audio`, `video`: the media pipes, on `command`, `sink`, `workers`, `bitrate`.
//! 5. `dispatch` (the callback thread) on `shared`; `io_loop` on `command`, `shared`,
//!    `dispatch`, `demux`, `tcp`, never on a pipe (pipes hang off its `MediaSinks` hooks).
//! 6. This file: [`Runtime`], starting the threads of the layers below.
//! 7. `assemble`: builds a peer on a [`Runtime`] and holds the deletion rule; only `api`
//!    uses it.

pub(crate) mod assemble;
pub(crate) mod audio;
mod bitrate;
mod callback;
mod command;
pub(crate) mod demux;
mod dispatch;
mod io_loop;
mod shared;
mod sink;
pub(crate) mod tcp;
mod udp_batch;
pub(crate) mod video;
mod workers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use parking_lot::Mutex;
use str0m::config::{CryptoProvider, DtlsCert};

use crate::config::RuntimeConfig;
use crate::error::{Error, Result};
use audio::AudioClock;
pub(crate) use command::Command;
use command::IoHandle;
use dispatch::Dispatcher;
use io_loop::{SharedUdp, StunSetup, MAX_SOCKETS_PER_PEER};
use workers::Workers;

pub use audio::AudioStats;
pub use shared::{PeerEvent, PeerHandler};
pub use sink::FrameCallback;
pub use video::VideoStats;

/// A set of threads peers live on. Cheap to clone; the threads stop when the last clone
/// and the last peer on it are gone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub io: Vec<IoHandle>,
    next_io: AtomicUsize,
    pub dispatcher: Dispatcher,
    pub workers: Workers,
    pub clock: AudioClock,
    pub crypto: Arc<CryptoProvider>,
    pub cert: DtlsCert,
    /// Local addresses of the shared UDP sockets (empty: peers bind their own).
    pub shared_udp: Vec<SocketAddr>,
    udp_counters: Arc<demux::DemuxCounters>,
    /// Local address of the ICE-TCP listener (`None`: UDP only).
    pub tcp_addr: Option<SocketAddr>,
    tcp_counters: Arc<tcp::TcpCounters>,
    stun_counters: Arc<crate::ice::StunCounters>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Runtime {
    /// Starts a runtime with its own threads.
    pub fn new(cfg: RuntimeConfig) -> Result<Runtime> {
        if cfg.io_threads == 0 || cfg.io_threads > 64 {
            return Err(Error::invalid("io_threads must be 1..=64"));
        }
        let stun = StunServers::from_config(&cfg)?;
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        // One certificate for the runtime: generating one per peer costs ~30 ms each.
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| Error::internal("DTLS certificate generation failed"))?;
        let mut threads = Vec::new();
        let (dispatcher, t) = Dispatcher::start()?;
        threads.push(t);
        let (workers, ts) = Workers::start(cfg.worker_threads)?;
        threads.extend(ts);
        let (clock, t) = AudioClock::start(workers.clone())?;
        threads.push(t);
        let mut shared_sockets = match cfg.udp_addr {
            Some(addr) => bind_shared(addr)?,
            None => Vec::new(),
        };
        let shared_udp = shared_sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<std::io::Result<Vec<_>>>()?;
        let udp_counters = Arc::new(demux::DemuxCounters::default());
        let mut tcp_listener = cfg.tcp_addr.map(tcp::bind).transpose()?;
        let tcp_addr = tcp_listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let tcp_counters = Arc::new(tcp::TcpCounters::default());
        let stun_counters = Arc::new(crate::ice::StunCounters::default());
        let mut io = Vec::new();
        for i in 0..cfg.io_threads {
            // The shared sockets live on the first I/O thread, with every peer using them.
            let shared = SharedUdp {
                sockets: std::mem::take(&mut shared_sockets),
                counters: udp_counters.clone(),
                tcp: tcp_listener.take(),
                tcp_counters: tcp_counters.clone(),
            };
            let setup = StunSetup {
                enabled: !stun.is_empty(),
                servers: stun.literal(),
                timeout: cfg.gather_timeout,
                counters: stun_counters.clone(),
            };
            let (handle, t) = io_loop::spawn(i, dispatcher.clone(), shared, setup)?;
            io.push(handle);
            threads.push(t);
        }
        if stun.literal().is_none() {
            stun.resolve_in_background(io.clone(), stun_counters.clone())?;
        }
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                io,
                next_io: AtomicUsize::new(0),
                dispatcher,
                workers,
                clock,
                crypto,
                cert,
                shared_udp,
                udp_counters,
                tcp_addr,
                tcp_counters,
                stun_counters,
                threads: Mutex::new(threads),
            }),
        })
    }

    /// The process-wide runtime (one I/O thread), created on first use.
    pub fn global() -> Result<Runtime> {
        static GLOBAL: OnceLock<std::result::Result<Runtime, Error>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| Runtime::new(RuntimeConfig::default()))
            .clone()
    }

    /// Says goodbye to every live peer on this runtime and closes it: `peerLeft` on its data
    /// channel, then SCTP shutdown and DTLS close_notify, so clients notice at once instead
    /// of at their consent timeout. Returns how many peers it closed, once every I/O thread
    /// has sent their goodbyes, or after `timeout` at the latest (an I/O thread that has not
    /// answered by then still closes its peers; they are just not counted).
    ///
    /// The runtime stays usable (new peers work); peers stay valid objects, in `Closed`,
    /// and their handlers get the `Closed` state. Any thread except the runtime's own
    /// (callbacks): it waits for the I/O threads, which may be delivering to that callback.
    pub fn shutdown(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut replies = Vec::new();
        for io in &self.inner.io {
            let (tx, rx) = bounded(1);
            let left = deadline.saturating_duration_since(Instant::now());
            if io
                .send_within(Command::CloseAll { reply: tx }, left)
                .is_ok()
            {
                replies.push(rx);
            }
        }
        replies
            .into_iter()
            .filter_map(|rx| rx.recv_deadline(deadline).ok())
            .sum()
    }

    /// Counters of the shared UDP socket (all zero without `RuntimeConfig::udp_addr`), of
    /// the ICE-TCP port, and of the STUN/TURN client (all zero without `stun:`/`turn:`
    /// servers).
    pub fn stats(&self) -> RuntimeStats {
        let c = &self.inner.udp_counters;
        let t = &self.inner.tcp_counters;
        let s = &self.inner.stun_counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        RuntimeStats {
            udp_dropped_unknown_ufrag: c.dropped_unknown_ufrag.load(Ordering::Relaxed),
            udp_dropped_unbound: c.dropped_unbound.load(Ordering::Relaxed),
            udp_bindings: c.bindings.load(Ordering::Relaxed),
            udp_bindings_evicted: c.bindings_evicted.load(Ordering::Relaxed),
            udp_recv_calls: get(&c.batch.recv_calls),
            udp_datagrams_in: get(&c.batch.datagrams_in),
            udp_recv_errors: get(&c.batch.recv_errors),
            udp_send_calls: get(&c.batch.send_calls),
            udp_datagrams_out: get(&c.batch.datagrams_out),
            udp_send_dropped: get(&c.batch.send_dropped),
            tcp_connections: get(&t.connections),
            tcp_accepted: get(&t.accepted),
            tcp_refused: get(&t.refused),
            tcp_check_timeouts: get(&t.check_timeouts),
            tcp_unknown_ufrag: get(&t.unknown_ufrag),
            tcp_bad_frames: get(&t.bad_frames),
            tcp_frames_in: get(&t.frames_in),
            tcp_frames_out: get(&t.frames_out),
            tcp_frames_dropped: get(&t.frames_dropped),
            stun_requests: get(&s.requests),
            stun_responses: get(&s.responses),
            stun_timeouts: get(&s.timeouts),
            stun_errors: get(&s.errors),
            stun_answers_without_srflx: get(&s.answers_without_srflx),
            turn_relays: get(&s.relays),
        }
    }

    /// The local address of the ICE-TCP listener (`RuntimeConfig::tcp_addr`), if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp_addr
    }

    /// The local addresses of the shared UDP sockets (empty when peers bind their own).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.inner.shared_udp
    }

    /// Number of peers currently held by this runtime's I/O threads.
    pub fn peer_count(&self) -> usize {
        self.inner.io.iter().map(|h| h.peer_count()).sum()
    }
}

/// Counters of a runtime's shared UDP socket and ICE-TCP port (see [`Runtime::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeStats {
    /// STUN checks from an unbound address naming no live peer's ufrag: dropped.
    pub udp_dropped_unknown_ufrag: u64,
    /// Other datagrams (DTLS, media, STUN responses, garbage) from an address bound to no
    /// peer: dropped.
    pub udp_dropped_unbound: u64,
    /// Client addresses bound to a peer now.
    pub udp_bindings: u64,
    /// Bindings dropped: idle, or pushed out by the per-peer or table bound (a client
    /// that is still there is bound again by its next check).
    pub udp_bindings_evicted: u64,
    /// Receive syscalls on the shared sockets (each reads up to 32 datagrams), including
    /// the last of each wakeup, which finds the socket drained.
    pub udp_recv_calls: u64,
    /// Datagrams read from the shared sockets.
    pub udp_datagrams_in: u64,
    /// Receive calls on the shared sockets that failed (ICMP errors, mostly).
    pub udp_recv_errors: u64,
    /// Send syscalls on the shared sockets: one `sendmmsg` carries up to 64 datagrams of
    /// any peers (Linux), a run of equal-size datagrams to one address goes as one UDP GSO
    /// send.
    pub udp_send_calls: u64,
    /// Datagrams sent from the shared sockets.
    pub udp_datagrams_out: u64,
    /// Datagrams not sent from the shared sockets: full socket buffer or a send error.
    pub udp_send_dropped: u64,
    /// ICE-TCP connections open now (all zero without `RuntimeConfig::tcp_addr`).
    pub tcp_connections: u64,
    /// ICE-TCP connections accepted since the start.
    pub tcp_accepted: u64,
    /// ICE-TCP connections closed at once: over the total or per-IP bound.
    pub tcp_refused: u64,
    /// ICE-TCP connections closed for sending no authenticated check within 5 s.
    pub tcp_check_timeouts: u64,
    /// ICE-TCP connections closed whose first check named no live peer's ufrag.
    pub tcp_unknown_ufrag: u64,
    /// ICE-TCP connections closed for a bad frame (oversized; not a STUN check before the
    /// connection was bound; too many checks failing their integrity check).
    pub tcp_bad_frames: u64,
    /// Frames received on ICE-TCP connections and handed to a peer.
    pub tcp_frames_in: u64,
    /// Frames sent on ICE-TCP connections.
    pub tcp_frames_out: u64,
    /// Frames a peer sent over ICE-TCP that were dropped: the connection's write buffer
    /// was full, or no connection to that address (str0m also checks the client's
    /// `tcptype active` candidates, which nobody can connect to).
    pub tcp_frames_dropped: u64,
    /// STUN binding transactions started toward the `stun:` servers (retransmissions not
    /// counted).
    pub stun_requests: u64,
    /// STUN answers that told us a server-reflexive address.
    pub stun_responses: u64,
    /// STUN transactions no answer came for (a dead or unreachable server).
    pub stun_timeouts: u64,
    /// STUN error answers, answers without an address, server names that did not resolve.
    pub stun_errors: u64,
    /// First answers sent when the gather timeout ran out before the STUN servers had
    /// answered (they may lack a server-reflexive candidate).
    pub stun_answers_without_srflx: u64,
    /// TURN relay allocations made (one per peer socket and `turn:` server).
    pub turn_relays: u64,
}

/// The `stun:` and `turn:` (UDP) servers of a runtime config, checked.
struct StunServers {
    stun: Vec<crate::ice::IceUrl>,
    /// TURN URLs with their user name and credential.
    turn: Vec<(crate::ice::IceUrl, String, String)>,
}

impl StunServers {
    fn from_config(cfg: &RuntimeConfig) -> Result<StunServers> {
        use crate::ice::{IceScheme, IceTransport};
        if cfg.gather_timeout > Duration::from_secs(4) {
            // An offer's caller waits 5 s for the I/O thread's answer.
            return Err(Error::invalid("gather_timeout must be at most 4 s"));
        }
        let mut out = StunServers {
            stun: Vec::new(),
            turn: Vec::new(),
        };
        for server in &cfg.ice_servers {
            for raw in &server.urls {
                let u = crate::ice::IceUrl::parse(raw)?;
                match (u.scheme, u.transport) {
                    (IceScheme::Stun, IceTransport::Udp) => out.stun.push(u),
                    (IceScheme::Turn, IceTransport::Udp) => {
                        let (Some(user), Some(cred)) = (&server.username, &server.credential)
                        else {
                            return Err(Error::invalid(format!(
                                "TURN server {raw:?} needs a username and a credential"
                            )));
                        };
                        out.turn.push((u, user.clone(), cred.clone()));
                    }
                    _ => tracing::info!(
                        "ICE server {}:{} ({:?}, {:?}) is not used by the runtime (stun: and \
                         turn: over UDP are)",
                        u.host,
                        u.port,
                        u.scheme,
                        u.transport
                    ),
                }
            }
        }
        Ok(out)
    }

    fn is_empty(&self) -> bool {
        self.stun.is_empty() && self.turn.is_empty()
    }

    /// The servers' addresses when every host is an IP literal (nothing to look up).
    fn literal(&self) -> Option<(Vec<SocketAddr>, Vec<crate::ice::TurnServer>)> {
        let stun = self
            .stun
            .iter()
            .map(|u| u.literal_addr())
            .collect::<Option<_>>()?;
        let turn = self
            .turn
            .iter()
            .map(|(u, user, cred)| {
                Some(crate::ice::TurnServer {
                    addr: u.literal_addr()?,
                    username: user.clone(),
                    credential: cred.clone(),
                })
            })
            .collect::<Option<_>>()?;
        Some((stun, turn))
    }

    /// Looks the servers' names up on a thread of its own (a lookup may block for
    /// seconds) and hands the addresses to every I/O thread; names that fail are logged
    /// and counted. The thread ends when that is done.
    fn resolve_in_background(
        &self,
        io: Vec<IoHandle>,
        counters: Arc<crate::ice::StunCounters>,
    ) -> Result<()> {
        let stun_urls = self.stun.clone();
        let turn_urls = self.turn.clone();
        std::thread::Builder::new()
            .name("swrtc-stun-resolve".into())
            .spawn(move || {
                let resolve = |u: &crate::ice::IceUrl| {
                    u.resolve().unwrap_or_else(|e| {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("{e}");
                        Vec::new()
                    })
                };
                let mut stun: Vec<SocketAddr> = stun_urls.iter().flat_map(resolve).collect();
                stun.dedup();
                let turn: Vec<crate::ice::TurnServer> = turn_urls
                    .iter()
                    .filter_map(|(u, user, cred)| {
                        Some(crate::ice::TurnServer {
                            addr: *resolve(u).first()?,
                            username: user.clone(),
                            credential: cred.clone(),
                        })
                    })
                    .collect();
                for h in &io {
                    // A closed runtime simply refuses it.
                    let _ = h.send(Command::IceServers {
                        stun: stun.clone(),
                        turn: turn.clone(),
                    });
                }
            })?;
        Ok(())
    }
}

/// Binds the runtime's shared UDP socket(s): on the given IP, or, for an unspecified one,
/// on every interface address a peer would bind (so the destination of each datagram, which
/// str0m matches against our candidates, is the socket's own address).
fn bind_shared(addr: SocketAddr) -> Result<Vec<std::net::UdpSocket>> {
    let ips = if addr.ip().is_unspecified() {
        crate::io::bind_addresses(&crate::config::PeerConfig::default())
    } else {
        vec![addr.ip()]
    };
    ips.into_iter()
        .take(MAX_SOCKETS_PER_PEER)
        .map(|ip| {
            let at = SocketAddr::new(ip, addr.port());
            let s = std::net::UdpSocket::bind(at).map_err(|e| {
                Error::new(
                    crate::error::ErrorKind::Io,
                    format!("cannot bind the shared UDP socket on {at}: {e}"),
                )
            })?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect()
}

impl RuntimeInner {
    /// The I/O thread for a new peer: round robin, or the first when peers share its
    /// UDP socket or ICE-TCP port.
    pub fn pick_io_index(&self) -> usize {
        if !self.shared_udp.is_empty() || self.tcp_addr.is_some() {
            return 0;
        }
        self.next_io.fetch_add(1, Ordering::Relaxed) % self.io.len()
    }
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        for h in &self.io {
            h.send_shutdown();
        }
        self.dispatcher.shutdown();
        self.clock.shutdown();
        self.workers.shutdown();
        let me = std::thread::current().id();
        for t in self.threads.lock().drain(..) {
            // The last clone may be dropped on one of our own threads (inside a callback).
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}
