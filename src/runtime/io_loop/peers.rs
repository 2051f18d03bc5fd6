//! A peer's entry on its I/O thread: adopting a new peer, flushing a session's output
//! (datagrams out, events to the app, media to the pipes) and forgetting a finished one.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mio::net::UdpSocket;
use mio::{Interest, Token};
use tracing::{debug, warn};

use super::{IoLoop, MAX_SOCKETS_PER_PEER};
use crate::runtime::command::{MediaSinks, NewPeer};
use crate::runtime::shared::{PeerEvent, PeerShared};
use crate::session::{PeerState, Session, SessionEvent};

/// A live peer of this I/O thread.
pub(super) struct Entry {
    pub(super) shared: Arc<PeerShared>,
    pub(super) session: Session,
    pub(super) sockets: Vec<(UdpSocket, SocketAddr)>,
    pub(super) sinks: MediaSinks,
}

impl IoLoop {
    pub(super) fn add_peer(&mut self, p: NewPeer) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        let mut sockets = Vec::new();
        for (i, s) in p.sockets.into_iter().enumerate().take(MAX_SOCKETS_PER_PEER) {
            let Ok(local) = s.local_addr() else { continue };
            let mut sock = UdpSocket::from_std(s);
            let token = Token(slot * MAX_SOCKETS_PER_PEER + i);
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut sock, token, Interest::READABLE)
            {
                warn!("cannot register socket {local}: {e}");
                continue;
            }
            sockets.push((sock, local));
        }
        self.by_id.insert(p.shared.id, slot);
        self.entries[slot] = Some(Entry {
            shared: p.shared,
            session: p.session,
            sockets,
            sinks: p.sinks,
        });
        self.register_ufrag(slot);
        self.srflx_add_peer(slot, self.clock);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends a session's transmits, routes its events, and forgets it once finished.
    pub(super) fn flush(&mut self, slot: usize) {
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        // A peer without sockets of its own uses the runtime's shared ones.
        let shared = entry.sockets.is_empty();
        let sockets = if shared { &self.shared } else { &entry.sockets };
        while let Some(t) = entry.session.poll_transmit() {
            if !shared && self.srflx.relays.is_relayed(t.source) {
                let out = self
                    .srflx
                    .relays
                    .send(self.clock, t.source, t.destination, &t.contents);
                if let Some(o) = out {
                    if let Some((sock, _)) = sockets.iter().find(|(_, l)| *l == o.local) {
                        if let Err(e) = sock.send_to(&o.data, o.to) {
                            debug!("send_to TURN {} failed: {e}", o.to);
                        }
                    }
                }
                continue;
            }
            if t.proto == str0m::net::Protocol::Tcp {
                if let Some(tcp) = self.tcp.as_mut() {
                    tcp.send(slot, t.destination, &t.contents, self.poll.registry());
                }
                continue;
            }
            let idx = sockets
                .iter()
                .position(|(_, local)| *local == t.source)
                .unwrap_or(0);
            if shared {
                self.demux
                    .note_sent(slot, t.destination, &t.contents, self.clock);
                let dest = self.demux.send_to(slot, t.destination, self.clock);
                // Sent with the other peers' output at the end of the loop turn.
                if self.batch.queue(idx, dest, &t.contents) {
                    self.batch.send_all(&self.shared);
                }
                continue;
            }
            let dest = t.destination;
            if let Some((sock, local)) = sockets.get(idx) {
                if let Err(e) = sock.send_to(&t.contents, dest) {
                    debug!("send_to {dest} from {local} failed: {e}");
                }
            }
        }
        while let Some(ev) = entry.session.poll_event() {
            let shared = &entry.shared;
            match ev {
                SessionEvent::State(s) => {
                    set_state(shared, &mut entry.sinks, s);
                    self.dispatcher.deliver(shared, PeerEvent::State(s));
                }
                SessionEvent::Message { data, binary } => {
                    self.dispatcher
                        .deliver(shared, PeerEvent::Message { data, binary });
                }
                SessionEvent::TrackStatus {
                    receiver_index,
                    enabled,
                } => {
                    if let Some(flag) = shared.track_enabled.get(receiver_index as usize) {
                        flag.store(enabled, Ordering::Release);
                    }
                    self.dispatcher.deliver(
                        shared,
                        PeerEvent::TrackStatus {
                            receiver_index,
                            enabled,
                        },
                    );
                }
                SessionEvent::Audio(pkt) => {
                    if let Some(sink) = entry.sinks.audio.as_mut() {
                        sink(pkt);
                    }
                }
                SessionEvent::Video(pkt) => {
                    if let Some(sink) = entry.sinks.video.as_mut() {
                        sink(pkt);
                    }
                }
                SessionEvent::KeyframeRequested => {
                    if let Some(hook) = entry.sinks.keyframe.as_mut() {
                        hook();
                    }
                }
            }
        }
        if entry.session.is_finished() {
            self.remove(slot);
        }
    }

    pub(super) fn remove(&mut self, slot: usize) {
        let Some(mut entry) = self.entries[slot].take() else {
            return;
        };
        for (sock, _) in entry.sockets.iter_mut() {
            let _ = self.poll.registry().deregister(sock);
        }
        self.srflx_forget(slot, &entry.sockets);
        if entry.shared.state() != PeerState::Closed {
            set_state(&entry.shared, &mut entry.sinks, PeerState::Closed);
        }
        self.by_id.remove(&entry.shared.id);
        self.demux.remove_peer(slot);
        if let Some(t) = self.tcp.as_mut() {
            t.remove_peer(slot, self.poll.registry());
        }
        self.free.push(slot);
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Closes every live session with goodbyes and sends them; returns how many.
    pub(super) fn close_all(&mut self, now: Instant) -> usize {
        let mut n = 0;
        for slot in 0..self.entries.len() {
            if let Some(e) = self.entries[slot].as_mut() {
                if e.session.state() != PeerState::Closed {
                    n += 1;
                }
                e.session.close(now);
            }
            self.flush(slot);
        }
        // The goodbyes are on the wire before the caller hears how many.
        self.batch.send_all(&self.shared);
        n
    }

    pub(super) fn shutdown(&mut self) {
        self.close_all(Instant::now());
    }
}

/// Publishes a state to the app side; on `Closed`, the pipes' readers and blocked writers
/// return `Closed` from then on.
fn set_state(shared: &PeerShared, sinks: &mut MediaSinks, s: PeerState) {
    shared.set_state(s);
    if s == PeerState::Closed {
        if let Some(hook) = sinks.closed.as_mut() {
            hook();
        }
    }
}
