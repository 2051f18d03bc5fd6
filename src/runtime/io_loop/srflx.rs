//! The I/O thread's side of STUN: drives the sans-IO [`Gatherer`] over the runtime's
//! sockets (the shared ones, refreshed for as long as the runtime runs, and each peer's
//! own, once when the peer is created), claims the STUN servers' answers before the
//! demultiplexer or a session sees them, adds the learned server-reflexive candidates to a
//! session before its first answer, and holds that first offer back until its sockets'
//! addresses are known, for at most the configured gather timeout. Never blocks: host
//! names were resolved elsewhere (see `Command::StunServers`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::net::UdpSocket;
use tracing::{debug, warn};

use super::relay::Relays;
use super::IoLoop;
use crate::error::{Error, Result};
use crate::ice::TurnServer;
use crate::ice::{Gatherer, StunCounters};

/// What an I/O thread knows about STUN when it starts.
pub(crate) struct StunSetup {
    /// Whether any `stun:` or `turn:` server is configured (without one nothing here does
    /// anything).
    pub enabled: bool,
    /// The STUN and TURN servers, or `None` while their names are looked up (they then
    /// come as `Command::IceServers`; first offers wait for them within the gather
    /// timeout).
    pub servers: Option<(Vec<SocketAddr>, Vec<TurnServer>)>,
    /// Longest a first answer waits for its server-reflexive addresses.
    pub timeout: Duration,
    pub counters: Arc<StunCounters>,
}

/// A first offer waiting for its sockets' server-reflexive addresses.
struct Parked {
    id: u64,
    slot: usize,
    sdp: String,
    reply: Sender<Result<String>>,
    until: Instant,
}

/// The STUN state of one I/O thread (see the module docs).
pub(crate) struct Srflx {
    enabled: bool,
    gatherer: Gatherer,
    servers: Option<Vec<SocketAddr>>,
    timeout: Duration,
    /// A peer's own socket address → the peer's slot (to send its requests from it).
    owners: HashMap<SocketAddr, usize>,
    /// TURN relays of the peers' own sockets.
    pub relays: Relays,
    parked: Vec<Parked>,
    /// Slots whose session has had its first answer (and with it its candidates).
    answered: HashSet<usize>,
    counters: Arc<StunCounters>,
}

impl Srflx {
    pub fn new(setup: StunSetup, now: Instant) -> Srflx {
        let mut relays = Relays::new(now, setup.counters.clone());
        let servers = setup.servers.map(|(stun, turn)| {
            relays.set_servers(turn);
            stun
        });
        Srflx {
            enabled: setup.enabled,
            gatherer: Gatherer::new(now, setup.counters.clone()),
            servers,
            timeout: setup.timeout,
            owners: HashMap::new(),
            relays,
            parked: Vec::new(),
            answered: HashSet::new(),
            counters: setup.counters,
        }
    }

    /// Whether a datagram received on `local` is a STUN server's answer to us (then
    /// consumed: peers never see it).
    pub fn claim(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.enabled && self.gatherer.handle_datagram(now, local, from, data)
    }

    /// When [`IoLoop::srflx_tick`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.enabled {
            return None;
        }
        let parked = self.parked.iter().map(|p| p.until).min();
        [
            self.gatherer.poll_timeout(),
            parked,
            self.relays.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl IoLoop {
    /// The STUN and TURN servers' addresses are known (looked up off this thread): start
    /// asking about the shared sockets and the sockets of peers not answered yet.
    pub(super) fn ice_servers_known(
        &mut self,
        servers: Vec<SocketAddr>,
        turn: Vec<TurnServer>,
        now: Instant,
    ) {
        let s = &mut self.srflx;
        if !s.enabled || s.servers.is_some() {
            return;
        }
        if servers.is_empty() && turn.is_empty() {
            warn!("no STUN or TURN server address resolved: no srflx or relay candidates");
        }
        s.servers = Some(servers);
        s.relays.set_servers(turn);
        self.gather_shared(now);
        for slot in 0..self.entries.len() {
            if !self.srflx.answered.contains(&slot) {
                self.srflx_add_peer(slot, now);
            }
        }
    }

    /// Starts the shared sockets' bindings (refreshed for the runtime's life).
    pub(super) fn gather_shared(&mut self, now: Instant) {
        let Some(servers) = self.srflx.servers.as_ref().filter(|_| self.srflx.enabled) else {
            return;
        };
        for (_, local) in &self.shared {
            for server in servers {
                self.srflx.gatherer.add(*local, *server, true, now);
            }
        }
    }

    /// A new peer: ask about its own sockets (a peer on the shared socket has nothing of
    /// its own to ask about).
    pub(super) fn srflx_add_peer(&mut self, slot: usize, now: Instant) {
        let s = &mut self.srflx;
        if !s.enabled {
            return;
        }
        let Some(entry) = self.entries.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let Some(servers) = &s.servers else {
            return;
        };
        for (_, local) in &entry.sockets {
            s.owners.insert(*local, slot);
            for server in servers {
                s.gatherer.add(*local, *server, false, now);
            }
            s.relays.add(slot, *local, now);
        }
    }

    /// A peer is gone: forget its bindings and fail its waiting offer.
    pub(super) fn srflx_forget(&mut self, slot: usize, sockets: &[(UdpSocket, SocketAddr)]) {
        let s = &mut self.srflx;
        if !s.enabled {
            return;
        }
        // The relays are deleted on their servers (sent before the sockets close).
        for o in s.relays.remove_slot(slot, self.clock) {
            if let Some((sock, _)) = sockets.iter().find(|(_, l)| *l == o.local) {
                let _ = sock.send_to(&o.data, o.to);
            }
        }
        for (_, local) in sockets {
            s.owners.remove(local);
            s.gatherer.remove_local(*local);
        }
        s.answered.remove(&slot);
        let gone: Vec<_> = s.parked.extract_if(.., |p| p.slot == slot).collect();
        for p in gone {
            let _ = p.reply.send(Err(Error::closed()));
        }
    }

    /// An offer: answered at once, unless it is the peer's first and its sockets'
    /// server-reflexive addresses are still coming; then it waits for them (at most the
    /// gather timeout, see [`IoLoop::srflx_tick`]).
    pub(super) fn offer(
        &mut self,
        id: u64,
        sdp: String,
        reply: Sender<Result<String>>,
        now: Instant,
    ) {
        let Some(&slot) = self.by_id.get(&id) else {
            let _ = reply.send(Err(Error::closed()));
            return;
        };
        let s = &self.srflx;
        let wait = s.enabled
            && !s.answered.contains(&slot)
            && (s.parked.iter().any(|p| p.slot == slot) || !self.srflx_ready(slot));
        if wait {
            let until = now + self.srflx.timeout;
            self.srflx.parked.push(Parked {
                id,
                slot,
                sdp,
                reply,
                until,
            });
            return;
        }
        self.first_answer_candidates(slot);
        self.answer_offer(id, &sdp, reply, now);
    }

    /// Whether every socket of the peer in `slot` has its STUN answers (or failures).
    fn srflx_ready(&self, slot: usize) -> bool {
        if self.srflx.servers.is_none() {
            return false;
        }
        self.locals_of(slot)
            .iter()
            .all(|l| self.srflx.gatherer.settled(*l) && self.srflx.relays.settled(*l))
    }

    fn locals_of(&self, slot: usize) -> Vec<SocketAddr> {
        match self.entries.get(slot).and_then(Option::as_ref) {
            Some(e) if e.sockets.is_empty() => self.shared.iter().map(|(_, l)| *l).collect(),
            Some(e) => e.sockets.iter().map(|(_, l)| *l).collect(),
            None => Vec::new(),
        }
    }

    /// Before a peer's first answer: its sockets' server-reflexive candidates.
    fn first_answer_candidates(&mut self, slot: usize) {
        if !self.srflx.enabled || !self.srflx.answered.insert(slot) {
            return;
        }
        let locals = self.locals_of(slot);
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        for local in locals {
            for public in self.srflx.gatherer.mapped(local) {
                if entry.session.add_server_reflexive(public, local) {
                    debug!(
                        "peer {}: server-reflexive candidate {public} (base {local})",
                        entry.shared.id
                    );
                }
            }
        }
        for (relayed, local) in self.srflx.relays.relayed_of(slot) {
            if entry.session.add_relayed(relayed, local) {
                debug!(
                    "peer {}: relay candidate {relayed} (via {local})",
                    entry.shared.id
                );
            }
        }
    }

    /// Runs the STUN client's timers, sends its requests, and answers the waiting offers
    /// whose addresses came in or whose wait is over.
    pub(super) fn srflx_tick(&mut self, now: Instant) {
        if !self.srflx.enabled {
            return;
        }
        if self.srflx.gatherer.poll_timeout().is_some_and(|t| t <= now) {
            self.srflx.gatherer.handle_timeout(now);
        }
        while let Some(t) = self.srflx.gatherer.poll_transmit() {
            self.send_from(t.local, t.server, &t.data);
        }
        for o in self.srflx.relays.tick(now) {
            self.send_from(o.local, o.to, &o.data);
        }
        if self.srflx.parked.is_empty() {
            return;
        }
        let ready: HashSet<usize> = self
            .srflx
            .parked
            .iter()
            .map(|p| p.slot)
            .filter(|&slot| self.srflx_ready(slot))
            .collect();
        // Every offer of a peer goes once its first may (in arrival order: a second offer
        // follows the first).
        let go: HashSet<usize> = self
            .srflx
            .parked
            .iter()
            .filter(|p| p.until <= now || ready.contains(&p.slot))
            .map(|p| p.slot)
            .collect();
        let released: Vec<_> = (self.srflx.parked)
            .extract_if(.., |p| go.contains(&p.slot))
            .collect();
        for p in released {
            if !ready.contains(&p.slot) && !self.srflx.answered.contains(&p.slot) {
                self.srflx
                    .counters
                    .answers_without_srflx
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    "peer {}: answered before its STUN servers did (gather timeout)",
                    p.id
                );
            }
            self.first_answer_candidates(p.slot);
            self.answer_offer(p.id, &p.sdp, p.reply, now);
        }
    }
}

impl IoLoop {
    /// Sends `data` to `to` from our socket `local` (a shared one or a peer's own).
    fn send_from(&self, local: SocketAddr, to: SocketAddr, data: &[u8]) {
        let sock = match self.shared.iter().find(|(_, l)| *l == local) {
            Some((s, _)) => Some(s),
            None => self.srflx.owners.get(&local).and_then(|&slot| {
                let e = self.entries.get(slot)?.as_ref()?;
                e.sockets.iter().find(|(_, l)| *l == local).map(|(s, _)| s)
            }),
        };
        if let Some(sock) = sock {
            if let Err(e) = sock.send_to(data, to) {
                debug!("STUN/TURN datagram from {local} to {to} not sent: {e}");
            }
        }
    }
}
