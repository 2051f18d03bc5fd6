//! One UDP socket for many peers: which peer a datagram on the shared socket belongs to.
//!
//! A remote address is bound to a peer only after that peer's session authenticated a STUN
//! check from it (str0m verified the MESSAGE-INTEGRITY with the peer's ICE password), so a
//! stranger cannot steal or flood a binding. Until then, only a STUN binding request whose
//! USERNAME (`local_ufrag:remote_ufrag`) names a live peer's local ufrag reaches a session
//! (which then verifies it); anything else from an unbound address is dropped and counted.
//! A client whose NAT rebinds sends its next check from the new address, which is bound the
//! same way; its old address ages out (idle, or pushed out by the per-peer bound).
//!
//! Pure bookkeeping on a caller-supplied clock, so the unit tests run on a virtual one.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::limits;
use crate::session::Session;

/// Where a datagram on the shared socket goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// From an address bound to this peer's slot.
    Bound(usize),
    /// A STUN binding request naming this peer's ufrag; bind its source with
    /// [`Demux::bind`] once the session has authenticated it.
    Check(usize),
    /// The answer to a check this peer sent (matched by its transaction id), from an
    /// address not bound yet: delivered, not bound (str0m verifies it).
    Reply(usize),
    /// Not for any peer (already counted).
    Drop,
}

/// Counters of the shared socket, readable from any thread.
#[derive(Debug, Default)]
pub(crate) struct DemuxCounters {
    pub dropped_unknown_ufrag: AtomicU64,
    pub dropped_unbound: AtomicU64,
    pub bindings: AtomicU64,
    pub bindings_evicted: AtomicU64,
    /// Syscalls and datagrams of the batched reads and sends.
    pub batch: super::udp_batch::BatchCounters,
}

struct Binding {
    slot: usize,
    last_seen: Instant,
}

/// The address and ufrag tables of one shared socket (see the module docs).
pub(crate) struct Demux {
    /// Local ICE ufrag → peer slot.
    ufrags: HashMap<String, usize>,
    /// Peer slot → its ufrag (to forget it when the peer goes or its ufrag changes).
    ufrag_of: HashMap<usize, String>,
    bound: HashMap<SocketAddr, Binding>,
    /// Peer slot → its bound addresses (at most `MAX_BINDINGS_PER_PEER`).
    addrs_of: HashMap<usize, Vec<SocketAddr>>,
    /// Transaction ids of checks our peers sent lately → the sender's slot, oldest first
    /// in `sent_order` (at most `MAX_PENDING_CHECKS`).
    sent: HashMap<[u8; 12], usize>,
    sent_order: VecDeque<([u8; 12], Instant)>,
    counters: std::sync::Arc<DemuxCounters>,
}

impl Demux {
    pub fn new(counters: std::sync::Arc<DemuxCounters>) -> Demux {
        Demux {
            ufrags: HashMap::new(),
            ufrag_of: HashMap::new(),
            bound: HashMap::new(),
            addrs_of: HashMap::new(),
            sent: HashMap::new(),
            sent_order: VecDeque::new(),
            counters,
        }
    }

    /// Routes checks naming `ufrag` to `slot` (replacing the slot's previous ufrag). False
    /// when another live peer already has that ufrag (the caller gives this one a new one).
    pub fn set_ufrag(&mut self, slot: usize, ufrag: &str) -> bool {
        if let Some(&other) = self.ufrags.get(ufrag) {
            return other == slot;
        }
        if let Some(old) = self.ufrag_of.insert(slot, ufrag.to_owned()) {
            self.ufrags.remove(&old);
        }
        self.ufrags.insert(ufrag.to_owned(), slot);
        true
    }

    /// The peer slot whose local ufrag is `ufrag` (the ICE-TCP port routes by it too).
    pub fn slot_of_ufrag(&self, ufrag: &str) -> Option<usize> {
        self.ufrags.get(ufrag).copied()
    }

    /// Forgets a peer: its ufrag and every address bound to it.
    pub fn remove_peer(&mut self, slot: usize) {
        if let Some(u) = self.ufrag_of.remove(&slot) {
            self.ufrags.remove(&u);
        }
        for a in self.addrs_of.remove(&slot).unwrap_or_default() {
            self.bound.remove(&a);
        }
        self.sent.retain(|_, s| *s != slot);
        self.publish_len();
    }

    /// Which peer `data` from `source` is for.
    pub fn route(&mut self, source: SocketAddr, data: &[u8], now: Instant) -> Route {
        // A check names its peer outright; that wins over an existing binding, so a client
        // whose address was last used by another (closed or restarted) peer gets through.
        if let Some(ufrag) = stun_request_local_ufrag(data) {
            return match self.ufrags.get(ufrag) {
                Some(&slot) => Route::Check(slot),
                None => {
                    self.counters
                        .dropped_unknown_ufrag
                        .fetch_add(1, Ordering::Relaxed);
                    Route::Drop
                }
            };
        }
        match self.bound.get_mut(&source) {
            Some(b) => {
                b.last_seen = now;
                Route::Bound(b.slot)
            }
            // Our check to a client address it has not checked us from yet (its candidates
            // came with the offer, so ours go out first).
            // Kept until it ages out: a retransmitted check has the same id and may be
            // answered twice.
            None if is_stun_response(data) => match self.sent.get(&data[8..20]) {
                Some(&slot) => Route::Reply(slot),
                None => {
                    self.counters
                        .dropped_unbound
                        .fetch_add(1, Ordering::Relaxed);
                    Route::Drop
                }
            },
            None => {
                self.counters
                    .dropped_unbound
                    .fetch_add(1, Ordering::Relaxed);
                Route::Drop
            }
        }
    }

    /// Routes one datagram that arrived on the shared socket `local` and feeds it to its
    /// peer's session (`session` looks a slot up); binds its source once the session has
    /// authenticated a check from it. A source bound this way is trusted by the session at
    /// once (its early queue), so DTLS sent right after the client's check succeeded is not
    /// lost while our own check of the pair is still out. Returns the slot fed.
    pub fn feed<'a>(
        &mut self,
        now: Instant,
        source: SocketAddr,
        local: SocketAddr,
        data: &[u8],
        session: impl FnOnce(usize) -> Option<&'a mut Session>,
    ) -> Option<usize> {
        let (slot, check) = match self.route(source, data, now) {
            Route::Bound(slot) | Route::Reply(slot) => (slot, false),
            Route::Check(slot) => (slot, true),
            Route::Drop => return None,
        };
        let s = session(slot)?;
        if data.len() > limits::MAX_DATAGRAM {
            s.count_dropped_datagram();
            return Some(slot);
        }
        s.handle_datagram(now, source, local, data);
        if check && s.has_checked(source) {
            self.bind(source, slot, now);
        }
        Some(slot)
    }

    /// Binds `source` to `slot` after the slot's session authenticated a check from it.
    /// Past a peer's bound its least recently seen address goes; past the table's bound,
    /// the least recently seen address of all.
    pub fn bind(&mut self, source: SocketAddr, slot: usize, now: Instant) {
        if let Some(b) = self.bound.get_mut(&source) {
            b.last_seen = now;
            if b.slot == slot {
                return;
            }
            let old = b.slot;
            self.bound.remove(&source);
            self.forget_addr(old, source);
        }
        let mine = self.addrs_of.get(&slot).map_or(0, Vec::len);
        if mine >= limits::MAX_BINDINGS_PER_PEER {
            let oldest = self.addrs_of[&slot]
                .iter()
                .copied()
                .min_by_key(|a| self.bound.get(a).map(|b| b.last_seen));
            if let Some(a) = oldest {
                self.evict(a);
            }
        } else if self.bound.len() >= limits::MAX_BINDINGS {
            let oldest = self
                .bound
                .iter()
                .min_by_key(|(_, b)| b.last_seen)
                .map(|(a, _)| *a);
            if let Some(a) = oldest {
                self.evict(a);
            }
        }
        self.bound.insert(
            source,
            Binding {
                slot,
                last_seen: now,
            },
        );
        self.addrs_of.entry(slot).or_default().push(source);
        self.publish_len();
    }

    /// Where a datagram the peer in `slot` sends to `dest` should go: `dest`, unless `dest`
    /// is one of the peer's addresses that has gone quiet (`limits::BINDING_STALE`) while
    /// a newer one of the same peer is live; then that one. This is what keeps audio going
    /// to a client whose NAT rebound: str0m keeps its selected pair (the old address)
    /// until ICE gives that pair up, about 20 s later, though the client's checks from the
    /// new address already passed. Every bound address passed an authenticated check of
    /// this peer, so the redirect never leaves the peer's own client.
    pub fn send_to(&self, slot: usize, dest: SocketAddr, now: Instant) -> SocketAddr {
        let Some(b) = self.bound.get(&dest) else {
            return dest;
        };
        if b.slot != slot || now.saturating_duration_since(b.last_seen) < limits::BINDING_STALE {
            return dest;
        }
        let since = b.last_seen;
        self.addrs_of
            .get(&slot)
            .into_iter()
            .flatten()
            .filter_map(|a| self.bound.get(a).map(|x| (*a, x.last_seen)))
            .filter(|(_, seen)| {
                *seen > since && now.saturating_duration_since(*seen) < limits::BINDING_STALE
            })
            .max_by_key(|(_, seen)| *seen)
            .map_or(dest, |(a, _)| a)
    }

    /// Notes a datagram the peer in `slot` sends to `dest`: the answer to a STUN binding
    /// request to an address not bound yet is routed by its transaction id.
    pub fn note_sent(&mut self, slot: usize, dest: SocketAddr, data: &[u8], now: Instant) {
        if data.len() < 20 || data[0] != 0 || data[1] != 1 || data[4..8] != STUN_MAGIC {
            return;
        }
        if self.bound.get(&dest).is_some_and(|b| b.slot == slot) {
            return; // its answer comes from a bound address anyway (every consent check)
        }
        let mut id = [0u8; 12];
        id.copy_from_slice(&data[8..20]);
        if self.sent.contains_key(&id) {
            return; // a retransmission: same id, already noted
        }
        while self.sent_order.len() >= limits::MAX_PENDING_CHECKS {
            if let Some((old, _)) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
        self.sent.insert(id, slot);
        self.sent_order.push_back((id, now));
    }

    /// Drops bindings idle for longer than `limits::BINDING_IDLE` (a live client sends
    /// media, pings or consent answers far more often).
    pub fn expire(&mut self, now: Instant) {
        let idle: Vec<SocketAddr> = self
            .bound
            .iter()
            .filter(|(_, b)| now.saturating_duration_since(b.last_seen) > limits::BINDING_IDLE)
            .map(|(a, _)| *a)
            .collect();
        for a in idle {
            self.evict(a);
        }
        // str0m gives a check up within this (about 20 s); a later answer is dropped.
        while let Some((id, at)) = self.sent_order.front() {
            if now.saturating_duration_since(*at) < limits::BINDING_IDLE {
                break;
            }
            self.sent.remove(id);
            self.sent_order.pop_front();
        }
    }

    /// Bound addresses.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.bound.len()
    }

    /// The slot `source` is bound to, if any.
    #[cfg(test)]
    pub fn slot_of(&self, source: SocketAddr) -> Option<usize> {
        self.bound.get(&source).map(|b| b.slot)
    }

    fn evict(&mut self, a: SocketAddr) {
        if let Some(b) = self.bound.remove(&a) {
            self.forget_addr(b.slot, a);
            self.counters
                .bindings_evicted
                .fetch_add(1, Ordering::Relaxed);
            self.publish_len();
        }
    }

    fn forget_addr(&mut self, slot: usize, a: SocketAddr) {
        if let Some(v) = self.addrs_of.get_mut(&slot) {
            v.retain(|x| *x != a);
            if v.is_empty() {
                self.addrs_of.remove(&slot);
            }
        }
    }

    fn publish_len(&self) {
        self.counters
            .bindings
            .store(self.bound.len() as u64, Ordering::Relaxed);
    }
}

const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// A STUN binding success (0x0101) or error (0x0111) response.
fn is_stun_response(data: &[u8]) -> bool {
    data.len() >= 20
        && data[0] == 1
        && (data[1] == 0x01 || data[1] == 0x11)
        && data[4..8] == STUN_MAGIC
}
const ATTR_USERNAME: u16 = 0x0006;

/// The local ufrag (what precedes the ':' of USERNAME) of a STUN binding request, or None
/// for anything else. Bounds-checked walk of the header and attributes (RFC 5389 §6, §15);
/// the integrity is left to str0m.
pub(crate) fn stun_request_local_ufrag(data: &[u8]) -> Option<&str> {
    // Binding request (0x0001), a length that fits, the magic cookie.
    if data.len() < 20 || data[0] != 0 || data[1] != 1 || data[4..8] != STUN_MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let body = data.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + alen)?;
        if kind == ATTR_USERNAME {
            let name = std::str::from_utf8(value).ok()?;
            let (local, _remote) = name.split_once(':')?;
            return (!local.is_empty()).then_some(local);
        }
        // Attributes are padded to 4 bytes.
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
#[path = "demux_tests.rs"]
mod tests;
