//! The STUN client that learns server-reflexive addresses. A binding is one local socket
//! and one STUN server; each runs one transaction at a time on stun-proto's agent (which
//! owns the retransmissions and the timeout), on the caller's clock. The caller sends what
//! [`Gatherer::poll_transmit`] yields from the named local socket and hands back every
//! datagram that [`Gatherer::handle_datagram`] claims (a response to one of our
//! outstanding transaction ids, from that socket): peers never see those.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun_proto::agent::{StunAgent, StunAgentPollRet};
use stun_proto::types::attribute::XorMappedAddress;
use stun_proto::types::message::{Message, MessageClass, MessageWriteVec, TransactionId, BINDING};
use stun_proto::types::prelude::*;
use stun_proto::types::TransportType;
use tracing::{debug, warn};

use crate::limits;

/// What the STUN client did, readable from any thread (see `RuntimeStats`).
#[derive(Debug, Default)]
pub(crate) struct StunCounters {
    /// Binding transactions started (retransmissions not counted).
    pub requests: AtomicU64,
    /// Success responses that carried our mapped address.
    pub responses: AtomicU64,
    /// Transactions that no response answered.
    pub timeouts: AtomicU64,
    /// Error responses, responses without an address, servers whose name did not resolve,
    /// sockets not gathered for (over the bound).
    pub errors: AtomicU64,
    /// First answers sent before their sockets' STUN transactions were done (the gather
    /// timeout passed): they may lack a server-reflexive candidate.
    pub answers_without_srflx: AtomicU64,
    /// TURN relay allocations made.
    pub relays: AtomicU64,
}

/// A binding request to send: `data` from the local socket `local` to `server`.
#[derive(Debug)]
pub(crate) struct StunTransmit {
    pub local: SocketAddr,
    pub server: SocketAddr,
    pub data: Vec<u8>,
}

struct Binding {
    local: SocketAddr,
    server: SocketAddr,
    agent: StunAgent,
    /// The transaction in flight.
    pending: Option<TransactionId>,
    /// When the agent wants to be polled again (a retransmission or the timeout).
    wake: Option<Instant>,
    /// When the next transaction starts; `None`: no more (a one-shot binding that settled).
    next: Option<Instant>,
    mapped: Option<SocketAddr>,
    /// Answered or failed at least once.
    settled: bool,
    /// Keep asking (the shared socket: the NAT mapping must stay, and may change) or ask
    /// once (a peer's own socket, which ICE keeps busy from then on).
    refresh: bool,
}

/// The STUN bindings of one I/O thread (see the module docs).
pub(crate) struct Gatherer {
    bindings: Vec<Binding>,
    transmits: VecDeque<StunTransmit>,
    /// The caller's clock at creation: stun-proto counts time from a zero of its own.
    epoch: Instant,
    counters: Arc<StunCounters>,
}

impl Gatherer {
    pub fn new(now: Instant, counters: Arc<StunCounters>) -> Gatherer {
        Gatherer {
            bindings: Vec::new(),
            transmits: VecDeque::new(),
            epoch: now,
            counters,
        }
    }

    /// Starts asking `server` for the public address of `local` (at the next
    /// [`Gatherer::handle_timeout`]). `refresh`: ask again every `limits::STUN_REFRESH`
    /// (and retry a failure after `limits::STUN_RETRY`) for as long as the binding lives.
    /// False (and nothing added) for a server of the other IP family, a pair already
    /// there, or past `limits::MAX_STUN_BINDINGS` (counted as an error).
    pub fn add(
        &mut self,
        local: SocketAddr,
        server: SocketAddr,
        refresh: bool,
        now: Instant,
    ) -> bool {
        if local.is_ipv4() != server.is_ipv4()
            || self
                .bindings
                .iter()
                .any(|b| b.local == local && b.server == server)
        {
            return false;
        }
        if self.bindings.len() >= limits::MAX_STUN_BINDINGS {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            warn!("too many STUN bindings: {local} is not asked for its public address");
            return false;
        }
        let agent = StunAgent::builder(TransportType::Udp, local)
            .request_retransmits(
                limits::STUN_RTO,
                Duration::MAX,
                limits::STUN_TRANSMISSIONS,
                limits::STUN_LAST_WAIT,
            )
            .build();
        self.bindings.push(Binding {
            local,
            server,
            agent,
            pending: None,
            wake: None,
            next: Some(now),
            mapped: None,
            settled: false,
            refresh,
        });
        true
    }

    /// Forgets every binding of `local` (its socket closed); a late answer is then not
    /// claimed.
    pub fn remove_local(&mut self, local: SocketAddr) {
        self.bindings.retain(|b| b.local != local);
    }

    /// Starts due transactions, queues due retransmissions, times out silent servers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let t = self.clock(now);
        for b in &mut self.bindings {
            if b.pending.is_none() && b.next.is_some_and(|n| n <= now) {
                b.next = None;
                let request = Message::builder_request(BINDING, MessageWriteVec::new());
                let id = request.transaction_id();
                match b.agent.send_request(request.finish(), b.server, t) {
                    Ok(tx) => {
                        self.counters.requests.fetch_add(1, Ordering::Relaxed);
                        self.transmits.push_back(StunTransmit {
                            local: b.local,
                            server: b.server,
                            data: tx.data.as_ref().to_vec(),
                        });
                        b.pending = Some(id);
                    }
                    Err(e) => {
                        // A fresh random id cannot be in flight already; a bug, not input.
                        warn!("STUN request to {} not sent: {e}", b.server);
                        b.next = b.refresh.then(|| now + limits::STUN_RETRY);
                    }
                }
            }
            if b.pending.is_none() {
                b.wake = None;
                continue;
            }
            while let Some(tx) = b.agent.poll_transmit(t) {
                self.transmits.push_back(StunTransmit {
                    local: b.local,
                    server: b.server,
                    data: tx.data.to_vec(),
                });
            }
            match b.agent.poll(t) {
                StunAgentPollRet::WaitUntil(w) => {
                    b.wake = Some(self.epoch + Duration::from_nanos(w.as_nanos().max(0) as u64));
                }
                StunAgentPollRet::TransactionTimedOut(_)
                | StunAgentPollRet::TransactionCancelled(_) => {
                    self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        "STUN server {} did not answer (from {}): no server-reflexive candidate from it",
                        b.server, b.local
                    );
                    b.pending = None;
                    b.wake = None;
                    b.settled = true;
                    b.next = b.refresh.then(|| now + limits::STUN_RETRY);
                }
            }
        }
    }

    /// The next request to send.
    pub fn poll_transmit(&mut self) -> Option<StunTransmit> {
        self.transmits.pop_front()
    }

    /// When [`Gatherer::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.bindings
            .iter()
            .filter_map(|b| match (b.wake, b.next) {
                (Some(w), Some(n)) => Some(w.min(n)),
                (w, n) => w.or(n),
            })
            .min()
    }

    /// Whether `data`, received on `local` from `from`, answers one of our transactions;
    /// if so it is consumed here (an address learned, or an error counted). Anything else
    /// (a peer's traffic) is left alone, at the cost of a few byte compares.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) -> bool {
        let Some(id) = response_transaction_id(data) else {
            return false;
        };
        let t = self.clock(now);
        let Some(b) = self
            .bindings
            .iter_mut()
            .find(|b| b.local == local && b.pending == Some(id))
        else {
            return false;
        };
        if from != b.server {
            // Our id from elsewhere: not the server's answer. Claimed (no peer asked), and
            // the transaction goes on.
            debug!(
                "STUN answer for {} came from {from}, not the server; dropped",
                b.server
            );
            return true;
        }
        let Ok(msg) = Message::from_bytes(data) else {
            debug!("malformed STUN answer from {from}; dropped");
            return true;
        };
        if !b.agent.handle_stun_message_with_time(&msg, from, t) {
            return true;
        }
        b.pending = None;
        b.wake = None;
        b.settled = true;
        let learned = if msg.has_class(MessageClass::Success) {
            msg.attribute::<XorMappedAddress>()
                .ok()
                .map(|x| x.addr(msg.transaction_id()))
        } else {
            None
        };
        match learned {
            Some(addr) => {
                self.counters.responses.fetch_add(1, Ordering::Relaxed);
                if b.mapped != Some(addr) {
                    debug!(
                        "server-reflexive address of {}: {addr} (STUN {from})",
                        b.local
                    );
                }
                b.mapped = Some(addr);
                b.next = b.refresh.then(|| now + limits::STUN_REFRESH);
            }
            None => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                warn!(
                    "STUN server {from} answered {} with an error or no address",
                    b.local
                );
                b.next = b.refresh.then(|| now + limits::STUN_RETRY);
            }
        }
        true
    }

    /// The public addresses learned for `local` (one per server that answered, the same
    /// address once), leaving out `local` itself (no NAT in between).
    pub fn mapped(&self, local: SocketAddr) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        for b in self.bindings.iter().filter(|b| b.local == local) {
            if let Some(a) = b.mapped.filter(|a| *a != local && !out.contains(a)) {
                out.push(a);
            }
        }
        out
    }

    /// Whether every binding of `local` has answered or failed at least once (true for a
    /// socket with no bindings).
    pub fn settled(&self, local: SocketAddr) -> bool {
        self.bindings
            .iter()
            .filter(|b| b.local == local)
            .all(|b| b.settled)
    }

    /// stun-proto's clock: time since our epoch.
    fn clock(&self, now: Instant) -> stun_proto::Instant {
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        stun_proto::Instant::from_nanos(i64::try_from(since).unwrap_or(i64::MAX))
    }
}

/// The transaction id of a STUN success (0x0101) or error (0x0111) binding response, or
/// `None` for anything else.
fn response_transaction_id(data: &[u8]) -> Option<TransactionId> {
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    if data.len() < 20
        || data[0] != 1
        || !(data[1] == 0x01 || data[1] == 0x11)
        || data[4..8] != MAGIC
    {
        return None;
    }
    let mut id = [0u8; 16];
    id[4..].copy_from_slice(&data[8..20]);
    Some(TransactionId::from(u128::from_be_bytes(id)))
}

#[cfg(test)]
#[path = "gather_tests.rs"]
mod tests;
