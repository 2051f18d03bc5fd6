//! ICE over TCP (RFC 6544), passive side only: one listening TCP port for every peer of a
//! runtime, for clients whose UDP is blocked. Each peer's answer offers a `tcptype passive`
//! host candidate on that port; the client connects and sends its ICE checks, DTLS, SCTP
//! and media over the connection as RFC 4571 frames (a 2-byte big-endian length, then the
//! datagram).
//!
//! A connection is routed like a datagram on the shared UDP socket (see `demux`): its
//! first frame must be a STUN binding request whose USERNAME names a live peer's local
//! ufrag; once that peer's session has authenticated a check from it, the connection is
//! bound to the peer and everything it carries goes there. What the peer's str0m sends
//! with `Protocol::Tcp` goes out framed on the connection bound to its destination.
//!
//! Hostile input is bounded: connections in total and per IP, a deadline for the first
//! authenticated check, frames no larger than a datagram, a bounded write buffer per
//! connection (frames that do not fit are dropped whole and counted). Anything else closes
//! the connection and is counted. Nothing here blocks: sockets are non-blocking and read
//! until the kernel has no more (mio is edge-triggered).

use std::collections::HashMap;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use str0m::net::TcpType;
use str0m::Candidate;
use tracing::debug;

use super::demux::stun_request_local_ufrag;
use crate::error::{Error, Result};
use crate::limits;

/// The listener's token; connection `i` has `TOKEN_BASE + 1 + i`. Far above any peer
/// socket's token (slot × sockets per peer) and below the shared sockets' and the waker's.
pub(crate) const TOKEN_BASE: usize = usize::MAX / 2;

/// Whether `t` belongs to the ICE-TCP port (its listener or a connection).
pub(crate) fn is_tcp_token(t: Token) -> bool {
    (TOKEN_BASE..=TOKEN_BASE + 1 + limits::MAX_TCP_CONNECTIONS).contains(&t.0)
}

/// Read buffer per connection: room for two whole frames of the largest datagram.
const READ_BUF: usize = 2 * (2 + limits::MAX_DATAGRAM);

/// Counters of the ICE-TCP port, readable from any thread.
#[derive(Debug, Default)]
pub(crate) struct TcpCounters {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections accepted (over the bounds or not).
    pub accepted: AtomicU64,
    /// Connections closed at once: over the total or per-IP bound.
    pub refused: AtomicU64,
    /// Connections closed for sending no authenticated check in time.
    pub check_timeouts: AtomicU64,
    /// Connections closed whose first check named no live peer's ufrag.
    pub unknown_ufrag: AtomicU64,
    /// Connections closed for a bad frame: oversized, or not a STUN check before the
    /// connection was bound, or too many checks that failed their integrity check.
    pub bad_frames: AtomicU64,
    /// Frames received and handed to a peer.
    pub frames_in: AtomicU64,
    /// Frames sent (queued to the kernel or the write buffer).
    pub frames_out: AtomicU64,
    /// Frames a peer sent that were dropped: the connection's write buffer was full, or no
    /// connection to that address exists (str0m also checks the client's `tcptype active`
    /// candidates, whose port 9 nobody listens on).
    pub frames_dropped: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct Conn {
    stream: TcpStream,
    remote: SocketAddr,
    /// The connection's local address (the candidate str0m matches; concrete even when
    /// the listener is on an unspecified IP).
    local: SocketAddr,
    /// The peer slot once a check from this connection was authenticated.
    slot: Option<usize>,
    accepted: Instant,
    last_seen: Instant,
    unverified: u32,
    rbuf: Box<[u8; READ_BUF]>,
    rlen: usize,
    /// Framed bytes the kernel has not taken yet (whole frames, the first maybe partly
    /// written).
    wbuf: Vec<u8>,
    /// Registered for writable events (only while `wbuf` is not empty).
    writing: bool,
}

/// What became of a connection after a read.
enum After {
    Open,
    Close,
}

/// The ICE-TCP port of one runtime (on its first I/O thread).
pub(crate) struct TcpIce {
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    per_ip: HashMap<IpAddr, usize>,
    /// Remote address → connection, for bound connections (where a peer's frames go).
    routes: HashMap<SocketAddr, usize>,
    counters: Arc<TcpCounters>,
}

impl TcpIce {
    /// Takes over a bound, non-blocking listener and registers it.
    pub fn new(
        listener: std::net::TcpListener,
        registry: &Registry,
        counters: Arc<TcpCounters>,
    ) -> Result<TcpIce> {
        let mut listener = TcpListener::from_std(listener);
        registry.register(&mut listener, Token(TOKEN_BASE), Interest::READABLE)?;
        Ok(TcpIce {
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            per_ip: HashMap::new(),
            routes: HashMap::new(),
            counters,
        })
    }

    /// Handles an event on a TCP token. `ufrag_slot` names the peer whose local ufrag a
    /// check names; `deliver(slot, source, local, frame)` hands a frame to that peer's
    /// session and answers whether the session has authenticated a check from `source`
    /// (`None`: the peer is gone). Slots fed are pushed to `fed`.
    pub fn on_event(
        &mut self,
        token: Token,
        now: Instant,
        registry: &Registry,
        ufrag_slot: impl Fn(&str) -> Option<usize>,
        mut deliver: impl FnMut(usize, SocketAddr, SocketAddr, &[u8]) -> Option<bool>,
        fed: &mut Vec<usize>,
    ) {
        if token.0 == TOKEN_BASE {
            self.accept(now, registry);
            return;
        }
        let i = token.0 - TOKEN_BASE - 1;
        let after = match self.conns.get_mut(i).and_then(Option::as_mut) {
            None => return,
            Some(conn) => {
                if conn.writing && !flush_writes(conn, registry, i) {
                    After::Close
                } else {
                    read_frames(conn, now, &self.counters, &ufrag_slot, &mut deliver, fed)
                }
            }
        };
        if let Some(conn) = self.conns[i].as_ref() {
            if let Some(slot) = conn.slot {
                if self.routes.get(&conn.remote) != Some(&i) {
                    debug!(
                        "ICE-TCP connection from {} bound to peer slot {slot}",
                        conn.remote
                    );
                    self.routes.insert(conn.remote, i);
                }
            }
        }
        if let After::Close = after {
            self.close(i, registry);
        }
    }

    fn accept(&mut self, now: Instant, registry: &Registry) {
        loop {
            let (mut stream, remote) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == IoKind::WouldBlock => return,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, mostly: the next connection retries.
                    debug!("ICE-TCP accept failed: {e}");
                    return;
                }
            };
            bump(&self.counters.accepted);
            let open = self.conns.len() - self.free.len();
            let from_ip = self.per_ip.get(&remote.ip()).copied().unwrap_or(0);
            if open >= limits::MAX_TCP_CONNECTIONS || from_ip >= limits::MAX_TCP_CONNECTIONS_PER_IP
            {
                bump(&self.counters.refused);
                continue; // dropping the stream closes it
            }
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            // Every frame is a datagram that should leave now (audio, checks, DTLS).
            let _ = stream.set_nodelay(true);
            let i = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if let Err(e) =
                registry.register(&mut stream, Token(TOKEN_BASE + 1 + i), Interest::READABLE)
            {
                debug!("cannot register ICE-TCP connection from {remote}: {e}");
                self.free.push(i);
                continue;
            }
            *self.per_ip.entry(remote.ip()).or_default() += 1;
            self.counters.connections.fetch_add(1, Ordering::Relaxed);
            self.conns[i] = Some(Conn {
                stream,
                remote,
                local,
                slot: None,
                accepted: now,
                last_seen: now,
                unverified: 0,
                rbuf: Box::new([0; READ_BUF]),
                rlen: 0,
                wbuf: Vec::new(),
                writing: false,
            });
            // Data that came with the handshake is read at the connection's first event
            // (registration reports a readable socket at once).
        }
    }

    /// Sends one datagram of the peer in `slot` to `dest` on the connection bound to it.
    pub fn send(&mut self, slot: usize, dest: SocketAddr, data: &[u8], registry: &Registry) {
        let Some(&i) = self.routes.get(&dest) else {
            bump(&self.counters.frames_dropped);
            return;
        };
        let Some(conn) = self.conns[i].as_mut().filter(|c| c.slot == Some(slot)) else {
            bump(&self.counters.frames_dropped);
            return;
        };
        let Ok(len) = u16::try_from(data.len()) else {
            bump(&self.counters.frames_dropped);
            return;
        };
        if conn.wbuf.len() + 2 + data.len() > limits::TCP_WRITE_BUFFER {
            bump(&self.counters.frames_dropped);
            return;
        }
        conn.wbuf.extend_from_slice(&len.to_be_bytes());
        conn.wbuf.extend_from_slice(data);
        bump(&self.counters.frames_out);
        if !flush_writes(conn, registry, i) {
            self.close(i, registry);
        }
    }

    /// Closes the connections of a peer that went away.
    pub fn remove_peer(&mut self, slot: usize, registry: &Registry) {
        for i in 0..self.conns.len() {
            if self.conns[i].as_ref().is_some_and(|c| c.slot == Some(slot)) {
                self.close(i, registry);
            }
        }
    }

    /// Closes connections without an authenticated check past the deadline, and bound
    /// ones idle past `limits::BINDING_IDLE` (a live client sends consent checks at least).
    pub fn sweep(&mut self, now: Instant, registry: &Registry) {
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_ref() else {
                continue;
            };
            let expired = match c.slot {
                None => {
                    now.saturating_duration_since(c.accepted) >= limits::TCP_FIRST_CHECK_TIMEOUT
                }
                Some(_) => now.saturating_duration_since(c.last_seen) >= limits::BINDING_IDLE,
            };
            if expired {
                if c.slot.is_none() {
                    bump(&self.counters.check_timeouts);
                }
                self.close(i, registry);
            }
        }
    }

    fn close(&mut self, i: usize, registry: &Registry) {
        let Some(mut c) = self.conns.get_mut(i).and_then(Option::take) else {
            return;
        };
        let _ = registry.deregister(&mut c.stream);
        if self.routes.get(&c.remote) == Some(&i) {
            self.routes.remove(&c.remote);
        }
        if let Some(n) = self.per_ip.get_mut(&c.remote.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&c.remote.ip());
            }
        }
        self.counters.connections.fetch_sub(1, Ordering::Relaxed);
        self.free.push(i);
        debug!("ICE-TCP connection from {} closed", c.remote);
    }
}

/// Reads a connection until the kernel has nothing more, handing each whole frame on.
fn read_frames(
    conn: &mut Conn,
    now: Instant,
    counters: &TcpCounters,
    ufrag_slot: &impl Fn(&str) -> Option<usize>,
    deliver: &mut impl FnMut(usize, SocketAddr, SocketAddr, &[u8]) -> Option<bool>,
    fed: &mut Vec<usize>,
) -> After {
    loop {
        let n = match conn.stream.read(&mut conn.rbuf[conn.rlen..]) {
            Ok(0) => return After::Close, // the client closed it
            Ok(n) => n,
            Err(e) if e.kind() == IoKind::WouldBlock => return After::Open,
            Err(e) if e.kind() == IoKind::Interrupted => continue,
            Err(e) => {
                debug!("ICE-TCP read from {} failed: {e}", conn.remote);
                return After::Close;
            }
        };
        conn.rlen += n;
        conn.last_seen = now;
        let mut at = 0;
        while conn.rlen - at >= 2 {
            let len = usize::from(u16::from_be_bytes([conn.rbuf[at], conn.rbuf[at + 1]]));
            if len > limits::MAX_DATAGRAM {
                bump(&counters.bad_frames);
                return After::Close;
            }
            if conn.rlen - at < 2 + len {
                break;
            }
            let start = at + 2;
            at = start + len;
            if len == 0 {
                continue;
            }
            if let After::Close = frame(conn, start, len, counters, ufrag_slot, deliver, fed) {
                return After::Close;
            }
        }
        // Keep the partial frame at the front (at most one frame's worth: cheap).
        conn.rbuf.copy_within(at..conn.rlen, 0);
        conn.rlen -= at;
    }
}

/// One whole frame at `conn.rbuf[start..start + len]`.
fn frame(
    conn: &mut Conn,
    start: usize,
    len: usize,
    counters: &TcpCounters,
    ufrag_slot: &impl Fn(&str) -> Option<usize>,
    deliver: &mut impl FnMut(usize, SocketAddr, SocketAddr, &[u8]) -> Option<bool>,
    fed: &mut Vec<usize>,
) -> After {
    let data = &conn.rbuf[start..start + len];
    if let Some(slot) = conn.slot {
        bump(&counters.frames_in);
        fed.push(slot);
        return match deliver(slot, conn.remote, conn.local, data) {
            Some(_) => After::Open,
            None => After::Close, // the peer is gone
        };
    }
    // Unbound: only a check naming a live peer may pass.
    let Some(ufrag) = stun_request_local_ufrag(data) else {
        bump(&counters.bad_frames);
        return After::Close;
    };
    let Some(slot) = ufrag_slot(ufrag) else {
        bump(&counters.unknown_ufrag);
        return After::Close;
    };
    bump(&counters.frames_in);
    fed.push(slot);
    match deliver(slot, conn.remote, conn.local, data) {
        Some(true) => conn.slot = Some(slot),
        Some(false) => {
            conn.unverified += 1;
            if conn.unverified > limits::TCP_MAX_UNVERIFIED_CHECKS {
                bump(&counters.bad_frames);
                return After::Close;
            }
        }
        None => return After::Close,
    }
    After::Open
}

/// Writes what the kernel takes; watches for writability while something is left. False
/// when the connection failed.
fn flush_writes(conn: &mut Conn, registry: &Registry, i: usize) -> bool {
    let mut done = 0;
    while done < conn.wbuf.len() {
        match conn.stream.write(&conn.wbuf[done..]) {
            Ok(0) => return false,
            Ok(n) => done += n,
            Err(e) if e.kind() == IoKind::WouldBlock => break,
            Err(e) if e.kind() == IoKind::Interrupted => continue,
            Err(e) => {
                debug!("ICE-TCP write to {} failed: {e}", conn.remote);
                return false;
            }
        }
    }
    conn.wbuf.drain(..done);
    let want = !conn.wbuf.is_empty();
    if want != conn.writing {
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let token = Token(TOKEN_BASE + 1 + i);
        if registry
            .reregister(&mut conn.stream, token, interest)
            .is_err()
        {
            return false;
        }
        conn.writing = want;
    }
    true
}

/// Binds the runtime's ICE-TCP listener (non-blocking).
pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::new(
            crate::error::ErrorKind::Io,
            format!("cannot bind the ICE-TCP port on {addr}: {e}"),
        )
    })?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// A peer's passive TCP candidates for the runtime's listener at `listen`: a host
/// candidate on each of `ips` (the peer's interface addresses, used when the listener is
/// on an unspecified IP) or on the listener's IP, plus a server-reflexive one for the
/// public address (1:1 NAT, same port).
pub(crate) fn candidates(
    listen: SocketAddr,
    ips: &[IpAddr],
    public_ip: Option<IpAddr>,
) -> Result<Vec<Candidate>> {
    let hosts: Vec<SocketAddr> = if listen.ip().is_unspecified() {
        ips.iter()
            .map(|ip| SocketAddr::new(*ip, listen.port()))
            .collect()
    } else {
        vec![listen]
    };
    let mut out = Vec::new();
    for &host in &hosts {
        out.push(checked(
            host,
            Candidate::builder()
                .tcp()
                .host(host)
                .tcptype(TcpType::Passive)
                .build(),
        )?);
        if let Some(ip) = public_ip.filter(|ip| ip.is_ipv4() == host.is_ipv4()) {
            let public = SocketAddr::new(ip, host.port());
            out.push(checked(
                public,
                Candidate::builder()
                    .tcp()
                    .server_reflexive(public, host)
                    .tcptype(TcpType::Passive)
                    .build(),
            )?);
        }
    }
    Ok(out)
}

fn checked<E: std::fmt::Display>(
    addr: SocketAddr,
    c: std::result::Result<Candidate, E>,
) -> Result<Candidate> {
    c.map_err(|e| Error::invalid(format!("bad ICE-TCP address {addr}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_candidates_for_each_address_and_the_public_one() {
        let ips: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "10.1.0.5".parse().unwrap()];
        let public = Some("203.0.113.7".parse().unwrap());
        let listen: SocketAddr = "0.0.0.0:3478".parse().unwrap();
        let c: Vec<String> = candidates(listen, &ips, public)
            .unwrap()
            .iter()
            .map(Candidate::to_sdp_string)
            .collect();
        assert_eq!(c.len(), 4, "{c:?}");
        assert!(c[0].contains(" tcp ") && c[0].contains("10.0.0.5 3478 typ host tcptype passive"));
        assert!(c[1].contains("203.0.113.7 3478 typ srflx") && c[1].ends_with("tcptype passive"));
        assert!(
            c[2].contains("10.1.0.5 3478 typ host tcptype passive"),
            "{c:?}"
        );
        // A listener on one IP offers only that one.
        let one = candidates("10.0.0.5:4000".parse().unwrap(), &ips, None).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].addr(), "10.0.0.5:4000".parse().unwrap());
    }
}
