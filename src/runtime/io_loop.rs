//! An I/O thread: one mio `Poll` over the UDP sockets of many peers plus a `Waker` for
//! commands. It is the only place that reads the clock and touches sockets for sessions;
//! it never runs codecs and never blocks on the app (full queues drop and count).
//!
//! This file is the loop itself: polling, timeouts and reading sockets. What a command
//! does is in `commands`, a peer's entry (adopt, flush, remove) in `peers`.

mod commands;
mod peers;
mod relay;
mod srflx;

pub(crate) use srflx::StunSetup;

use std::collections::HashMap;
use std::io::ErrorKind as IoKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, warn};

use super::command::{Command, IoHandle};
use super::demux::{Demux, DemuxCounters};
use super::dispatch::Dispatcher;
use super::tcp::{self, TcpCounters, TcpIce};
use super::udp_batch::UdpBatch;
use crate::error::Result;
use crate::limits;
use peers::Entry;

const WAKER: Token = Token(usize::MAX);
/// Shared sockets count down from just below the waker.
const SHARED_FIRST: usize = usize::MAX - 1;
/// Sockets per peer are addressed by the low bits of the token.
pub(crate) const MAX_SOCKETS_PER_PEER: usize = 8;
/// Datagrams read from one socket before the session's output is flushed.
const FLUSH_EVERY: usize = 32;

/// The shared sockets an I/O thread serves (none on all but the first).
pub(crate) struct SharedUdp {
    pub sockets: Vec<std::net::UdpSocket>,
    pub counters: Arc<DemuxCounters>,
    /// The ICE-TCP listener (first I/O thread only).
    pub tcp: Option<std::net::TcpListener>,
    pub tcp_counters: Arc<TcpCounters>,
}

struct IoLoop {
    poll: Poll,
    /// The runtime's shared UDP sockets (first I/O thread only) and their demultiplexer.
    shared: Vec<(UdpSocket, SocketAddr)>,
    demux: Demux,
    /// Batched reads and sends on `shared`.
    batch: UdpBatch,
    /// The runtime's ICE-TCP port (first I/O thread only).
    tcp: Option<TcpIce>,
    /// STUN and TURN: server-reflexive addresses and relays of our sockets (see `srflx`).
    srflx: srflx::Srflx,
    /// Slots fed from a shared socket since their last flush.
    dirty: Vec<usize>,
    next_sweep: Instant,
    /// The loop's last clock reading (for the demultiplexer's send path, whose bounds are
    /// in seconds).
    clock: Instant,
    rx: Receiver<Command>,
    sleeping: Arc<AtomicBool>,
    dispatcher: Dispatcher,
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    by_id: HashMap<u64, usize>,
    buf: Vec<u8>,
    count: Arc<AtomicUsize>,
}

pub(crate) fn spawn(
    index: usize,
    dispatcher: Dispatcher,
    shared_udp: SharedUdp,
    stun: StunSetup,
) -> Result<(IoHandle, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let mut shared = Vec::new();
    for (i, s) in shared_udp.sockets.into_iter().enumerate() {
        let local = s.local_addr()?;
        let mut sock = UdpSocket::from_std(s);
        poll.registry()
            .register(&mut sock, Token(SHARED_FIRST - i), Interest::READABLE)?;
        shared.push((sock, local));
    }
    let tcp = match shared_udp.tcp {
        Some(l) => Some(TcpIce::new(l, poll.registry(), shared_udp.tcp_counters)?),
        None => None,
    };
    let batch = UdpBatch::new(&shared, shared_udp.counters.clone())?;
    let (handle, inbox) = IoHandle::new(Waker::new(poll.registry(), WAKER)?);
    let mut lp = IoLoop {
        poll,
        shared,
        demux: Demux::new(shared_udp.counters),
        batch,
        tcp,
        srflx: srflx::Srflx::new(stun, Instant::now()),
        dirty: Vec::new(),
        next_sweep: Instant::now(),
        clock: Instant::now(),
        rx: inbox.rx,
        sleeping: inbox.sleeping,
        dispatcher,
        entries: Vec::new(),
        free: Vec::new(),
        by_id: HashMap::new(),
        buf: vec![0; limits::MAX_DATAGRAM + 1],
        count: inbox.peers,
    };
    let t = std::thread::Builder::new()
        .name(format!("swrtc-io-{index}"))
        .spawn(move || {
            lp.gather_shared(Instant::now());
            lp.run()
        })?;
    Ok((handle, t))
}

impl IoLoop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let deadline = self
                .entries
                .iter()
                .flatten()
                .map(|e| e.session.poll_timeout())
                .chain(self.srflx.poll_timeout())
                .min();
            let mut wait = deadline.map_or(Duration::from_secs(1), |d| {
                d.saturating_duration_since(now).min(Duration::from_secs(1))
            });
            // Announce the sleep, then look once more: a command queued before the flag
            // was set did not wake us, so do not block on it.
            self.sleeping.store(true, Ordering::SeqCst);
            if !self.rx.is_empty() {
                wait = Duration::ZERO;
            }
            let polled = self.poll.poll(&mut events, Some(wait));
            self.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = polled {
                if e.kind() != IoKind::Interrupted {
                    warn!("mio poll failed: {e}");
                }
                continue;
            }
            let now = Instant::now();
            self.clock = now;
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    t if t.0 > SHARED_FIRST - MAX_SOCKETS_PER_PEER => {
                        self.read_shared(SHARED_FIRST - t.0, now);
                    }
                    t if tcp::is_tcp_token(t) => self.on_tcp(t, now),
                    t => self.read_socket(t, now),
                }
            }
            if (!self.shared.is_empty() || self.tcp.is_some()) && now >= self.next_sweep {
                self.demux.expire(now);
                if let Some(t) = self.tcp.as_mut() {
                    t.sweep(now, self.poll.registry());
                }
                self.next_sweep = now + Duration::from_secs(1);
            }
            if !self.handle_commands(now) {
                self.shutdown();
                return;
            }
            let now = Instant::now();
            self.srflx_tick(now);
            for slot in 0..self.entries.len() {
                let due = match &self.entries[slot] {
                    Some(e) => e.session.poll_timeout() <= now,
                    None => false,
                };
                if due {
                    if let Some(e) = self.entries[slot].as_mut() {
                        e.session.handle_timeout(now);
                    }
                    self.flush(slot);
                }
            }
            self.batch.send_all(&self.shared);
        }
    }

    fn read_socket(&mut self, token: Token, now: Instant) {
        let slot = token.0 / MAX_SOCKETS_PER_PEER;
        let idx = token.0 % MAX_SOCKETS_PER_PEER;
        let mut since_flush = 0;
        loop {
            let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            let Some((sock, local)) = entry.sockets.get(idx) else {
                return;
            };
            let local = *local;
            match sock.recv_from(&mut self.buf) {
                Ok((n, source)) => {
                    if n > limits::MAX_DATAGRAM {
                        entry.session.count_dropped_datagram();
                    } else if self.srflx.claim(now, local, source, &self.buf[..n]) {
                        // A STUN server's answer about this socket, not the client's.
                    } else if let Some(relayed) =
                        self.srflx.relays.claim(now, local, source, &self.buf[..n])
                    {
                        // From our TURN server: its own answers, or a client's datagram
                        // it relayed.
                        if let Some(r) = relayed {
                            entry
                                .session
                                .handle_datagram(now, r.peer, r.relayed, &r.data);
                        }
                    } else {
                        entry
                            .session
                            .handle_datagram(now, source, local, &self.buf[..n]);
                    }
                    since_flush += 1;
                    if since_flush >= FLUSH_EVERY {
                        since_flush = 0;
                        self.flush(slot);
                    }
                }
                Err(e) if e.kind() == IoKind::WouldBlock => break,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors (port unreachable) surface here on Linux; not fatal.
                    debug!("recv_from on {local} failed: {e}");
                    continue;
                }
            }
        }
        self.flush(slot);
    }

    /// Reads the shared socket `idx` dry, a batch per call, handing each datagram to the
    /// peer the demultiplexer names (see `demux`).
    fn read_shared(&mut self, idx: usize, now: Instant) {
        let mut since_flush = 0;
        loop {
            let Some((sock, local)) = self.shared.get(idx) else {
                return;
            };
            let local = *local;
            let n = match self.batch.recv(idx, sock) {
                Ok(n) => n,
                Err(e) if e.kind() == IoKind::WouldBlock => break,
                Err(e) if e.kind() == IoKind::NotFound => return,
                // Counted and logged by the batch; ICMP errors are not fatal.
                Err(_) => continue,
            };
            for i in 0..n {
                let (source, datagrams) = self.batch.datagrams(i);
                for data in datagrams {
                    // One byte past the limit is enough to count an oversized datagram.
                    let data = &data[..data.len().min(limits::MAX_DATAGRAM + 1)];
                    if self.srflx.claim(now, local, source, data) {
                        // A STUN server's answer about this socket, not a client's.
                        continue;
                    }
                    let entries = &mut self.entries;
                    let fed = self.demux.feed(now, source, local, data, |slot| {
                        entries
                            .get_mut(slot)
                            .and_then(Option::as_mut)
                            .map(|e| &mut e.session)
                    });
                    if let Some(slot) = fed {
                        self.dirty.push(slot);
                        since_flush += 1;
                    }
                }
            }
            if since_flush >= FLUSH_EVERY {
                since_flush = 0;
                self.flush_dirty();
            }
        }
        self.flush_dirty();
    }

    /// An event on the ICE-TCP port: a connection's frames go to the peer its first
    /// authenticated check named (see `tcp`).
    fn on_tcp(&mut self, token: Token, now: Instant) {
        let Some(tcp) = self.tcp.as_mut() else {
            return;
        };
        let demux = &self.demux;
        let entries = &mut self.entries;
        tcp.on_event(
            token,
            now,
            self.poll.registry(),
            |ufrag| demux.slot_of_ufrag(ufrag),
            |slot, source, local, data| {
                let s = &mut entries.get_mut(slot)?.as_mut()?.session;
                s.handle_tcp_frame(now, source, local, data);
                Some(s.has_checked(source))
            },
            &mut self.dirty,
        );
        self.flush_dirty();
    }

    fn flush_dirty(&mut self) {
        self.dirty.sort_unstable();
        self.dirty.dedup();
        for slot in std::mem::take(&mut self.dirty) {
            self.flush(slot);
        }
        self.batch.send_all(&self.shared);
    }

    /// Tells the demultiplexer the slot's current ufrag (a new peer, or after an offer,
    /// which may restart ICE). A ufrag another peer has (vanishingly rare) is renewed.
    fn register_ufrag(&mut self, slot: usize) {
        if self.shared.is_empty() && self.tcp.is_none() {
            return;
        }
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        for _ in 0..4 {
            let ufrag = entry.session.local_ufrag();
            if self.demux.set_ufrag(slot, &ufrag) {
                return;
            }
            entry.session.renew_local_credentials();
        }
        warn!("no unique ICE ufrag for peer {}", entry.shared.id);
    }
}
