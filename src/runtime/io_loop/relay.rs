//! TURN relays for the peers' own sockets: one UDP allocation per socket and `turn:`
//! server (turn-client-proto, sans-IO, driven from the I/O thread: allocation with the
//! long-term credentials, refreshes, channel bindings (with their permissions) toward each
//! address the session sends to, and the deallocation when the peer goes). What the
//! session sends from the relayed address is wrapped for the server; what the server
//! relays comes back unwrapped as received on the relayed address. The shared UDP socket
//! gets no relay (one allocation per 5-tuple would have to be shared by every peer).

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};
use turn_client_proto::api::{TurnClientApi, TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::prelude::DelayedTransmitBuild;
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::stun::types::TransportType;
use turn_client_proto::types::TurnCredentials;
use turn_client_proto::udp::TurnClientUdp;

use crate::ice::{StunCounters, TurnServer};

/// Datagrams held per relay while a channel to their destination is being bound; past
/// it the oldest goes (str0m retransmits its checks).
const MAX_WAITING: usize = 16;

/// A datagram to send from one of a peer's sockets.
pub(crate) struct Outgoing {
    pub local: SocketAddr,
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// A datagram the TURN server relayed to us from `peer`, as received on `relayed`.
pub(crate) struct Relayed {
    pub peer: SocketAddr,
    pub relayed: SocketAddr,
    pub data: Vec<u8>,
}

struct Relay {
    slot: usize,
    local: SocketAddr,
    server: SocketAddr,
    client: TurnClientUdp,
    relayed: Option<SocketAddr>,
    /// Allocated or failed.
    settled: bool,
    /// Datagrams waiting for their channel (destination, data).
    waiting: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Destinations whose channel is being bound.
    binding: Vec<SocketAddr>,
    wake: Option<Instant>,
}

/// The TURN relays of one I/O thread.
pub(crate) struct Relays {
    servers: Vec<TurnServer>,
    relays: Vec<Relay>,
    /// Every relayed address in `relays` (the per-transmit check is a lookup).
    relayed: HashSet<SocketAddr>,
    epoch: Instant,
    counters: Arc<StunCounters>,
}

impl Relays {
    pub fn new(now: Instant, counters: Arc<StunCounters>) -> Relays {
        Relays {
            servers: Vec::new(),
            relays: Vec::new(),
            relayed: HashSet::new(),
            epoch: now,
            counters,
        }
    }

    pub fn set_servers(&mut self, servers: Vec<TurnServer>) {
        self.servers = servers;
    }

    fn clock(&self, now: Instant) -> turn_client_proto::stun::Instant {
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        turn_client_proto::stun::Instant::from_nanos(i64::try_from(since).unwrap_or(i64::MAX))
    }

    /// Allocates a relay on every server for the peer socket `local`.
    pub fn add(&mut self, slot: usize, local: SocketAddr, now: Instant) {
        for s in &self.servers {
            if s.addr.is_ipv4() != local.is_ipv4()
                || self.relays.len() >= crate::limits::MAX_STUN_BINDINGS
            {
                continue;
            }
            let creds = TurnCredentials::new(&s.username, &s.credential);
            let client = TurnClientUdp::allocate(local, s.addr, TurnConfig::new(creds));
            self.relays.push(Relay {
                slot,
                local,
                server: s.addr,
                client,
                relayed: None,
                settled: false,
                waiting: VecDeque::new(),
                binding: Vec::new(),
                wake: Some(now),
            });
        }
    }

    /// Whether every relay of `local` is allocated or has failed.
    pub fn settled(&self, local: SocketAddr) -> bool {
        self.relays
            .iter()
            .filter(|r| r.local == local)
            .all(|r| r.settled)
    }

    /// The relayed addresses of `slot`'s sockets, with the socket each goes through.
    pub fn relayed_of(&self, slot: usize) -> Vec<(SocketAddr, SocketAddr)> {
        self.relays
            .iter()
            .filter(|r| r.slot == slot)
            .filter_map(|r| Some((r.relayed?, r.local)))
            .collect()
    }

    pub fn is_relayed(&self, addr: SocketAddr) -> bool {
        self.relayed.contains(&addr)
    }

    /// A datagram from the TURN server on `local`: handled here (`Some(None)`), relayed
    /// data for the session (`Some(Some(..))`), or not from a TURN server (`None`).
    pub fn claim(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) -> Option<Option<Relayed>> {
        // Everything else a peer's socket receives is over at the first test.
        if !self.servers.iter().any(|s| s.addr == from) {
            return None;
        }
        let t = self.clock(now);
        let r = self
            .relays
            .iter_mut()
            .find(|r| r.local == local && r.server == from)?;
        let ret = r
            .client
            .recv(Transmit::new(data, TransportType::Udp, from, local), t);
        r.wake = Some(now);
        tracing::trace!("from TURN {from}: {ret:?}");
        match ret {
            TurnRecvRet::Handled => Some(None),
            TurnRecvRet::Ignored(_) => None,
            TurnRecvRet::PeerData(d) => Some(r.relayed.map(|relayed| Relayed {
                peer: d.peer,
                relayed,
                data: d.data().to_vec(),
            })),
            TurnRecvRet::PeerIcmp { peer, .. } => {
                debug!("ICMP from {peer} through the TURN relay");
                Some(None)
            }
        }
    }

    /// What the session sends from the relayed address `relayed` to `to`: wrapped for the
    /// server, or held until the channel to `to` is bound (which this starts).
    pub fn send(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) -> Option<Outgoing> {
        let t = self.clock(now);
        let r = self
            .relays
            .iter_mut()
            .find(|r| r.relayed == Some(relayed))?;
        if r.client.have_permission(TransportType::Udp, to.ip()) && !r.binding.contains(&to) {
            return wrap(r, to, data, t);
        }
        if !r.binding.contains(&to) {
            match r.client.bind_channel(TransportType::Udp, to, t) {
                Ok(()) => r.binding.push(to),
                Err(e) => {
                    debug!("TURN channel to {to} not bound: {e}");
                    return None;
                }
            }
        }
        if r.waiting.len() >= MAX_WAITING {
            r.waiting.pop_front();
        }
        r.waiting.push_back((to, data.to_vec()));
        r.wake = Some(now);
        None
    }

    /// Runs the clients' timers and events; returns what to send.
    pub fn tick(&mut self, now: Instant) -> Vec<Outgoing> {
        let t = self.clock(now);
        let epoch = self.epoch;
        let mut out = Vec::new();
        for r in &mut self.relays {
            if r.wake.is_some_and(|w| w > now) {
                continue;
            }
            r.wake = match r.client.poll(t) {
                TurnPollRet::WaitUntil(w) => {
                    Some(epoch + Duration::from_nanos(w.as_nanos().max(0) as u64))
                }
                TurnPollRet::Closed => None,
                _ => Some(now + Duration::from_millis(50)),
            };
            while let Some(tx) = r.client.poll_transmit(t) {
                out.push(Outgoing {
                    local: r.local,
                    to: tx.to,
                    data: tx.data.to_vec(),
                });
            }
            while let Some(ev) = r.client.poll_event() {
                match ev {
                    TurnEvent::AllocationCreated(_, addr) => {
                        debug!("TURN relay {addr} for {} via {}", r.local, r.server);
                        self.counters.relays.fetch_add(1, Ordering::Relaxed);
                        r.relayed = Some(addr);
                        self.relayed.insert(addr);
                        r.settled = true;
                    }
                    TurnEvent::AllocationCreateFailed(_) => {
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        warn!(
                            "TURN server {} refused an allocation for {}",
                            r.server, r.local
                        );
                        r.settled = true;
                    }
                    TurnEvent::ChannelCreated(_, peer) => {
                        r.binding.retain(|a| *a != peer);
                        let (ready, rest): (VecDeque<_>, VecDeque<_>) =
                            r.waiting.drain(..).partition(|(to, _)| *to == peer);
                        r.waiting = rest;
                        for (to, data) in ready {
                            out.extend(wrap(r, to, &data, t));
                        }
                    }
                    TurnEvent::ChannelCreateFailed(_, peer) => {
                        r.binding.retain(|a| *a != peer);
                        r.waiting.retain(|(to, _)| *to != peer);
                        debug!("TURN channel to {peer} failed");
                    }
                    _ => {}
                }
            }
        }
        // A client that never answered (dead server) settles when the agent gives up.
        for r in &mut self.relays {
            if !r.settled && r.wake.is_none() {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                r.settled = true;
            }
        }
        out
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.relays.iter().filter_map(|r| r.wake).min()
    }

    /// A peer is gone: its allocations are deleted (what to send) and forgotten.
    pub fn remove_slot(&mut self, slot: usize, now: Instant) -> Vec<Outgoing> {
        let t = self.clock(now);
        let mut out = Vec::new();
        let gone: Vec<_> = self.relays.extract_if(.., |r| r.slot == slot).collect();
        for mut r in gone {
            if let Some(a) = r.relayed {
                self.relayed.remove(&a);
            }
            if r.relayed.is_some() && r.client.delete(t).is_ok() {
                while let Some(tx) = r.client.poll_transmit(t) {
                    out.push(Outgoing {
                        local: r.local,
                        to: tx.to,
                        data: tx.data.to_vec(),
                    });
                }
            }
        }
        out
    }
}

fn wrap(
    r: &mut Relay,
    to: SocketAddr,
    data: &[u8],
    t: turn_client_proto::stun::Instant,
) -> Option<Outgoing> {
    let sent = r.client.send_to(TransportType::Udp, to, data, t);
    tracing::trace!(
        "to {to} via TURN: {:?}",
        sent.as_ref().map(|o| o.as_ref().map(|t| (t.from, t.to)))
    );
    match sent {
        Ok(Some(tx)) => Some(Outgoing {
            local: r.local,
            to: tx.to,
            data: tx.data.build(),
        }),
        Ok(None) => None,
        Err(e) => {
            debug!("not relayed to {to}: {e}");
            None
        }
    }
}
