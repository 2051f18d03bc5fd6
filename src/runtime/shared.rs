//! What an app-side peer handle and the I/O thread share: the event queue for
//! `poll_event`, the callback slot and its gate, and a few atomics the app reads cheaply.
//! It names no pipe type (the pipes hang off the I/O thread's `MediaSinks` hooks).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::callback::CallbackSlot;
use crate::limits;
use crate::session::PeerState;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

/// An event of a peer, delivered to its [`PeerHandler`] or returned by `poll_event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// The peer's state changed (see [`PeerState`]).
    State(PeerState),
    /// An app message from the client (pings and signalling are never delivered).
    Message {
        /// The bytes; UTF-8 JSON text for Pipecat clients.
        data: Vec<u8>,
        /// Whether the client sent it as binary.
        binary: bool,
    },
    /// The client enabled or disabled a track (0 mic, 1 camera, 2 screen).
    TrackStatus {
        /// Receiver index.
        receiver_index: u32,
        /// Whether the track sends.
        enabled: bool,
    },
}

/// Receives a peer's events on the runtime's dispatcher thread (one thread per runtime,
/// events of one peer in order). It may call any peer method, including closing the peer.
pub trait PeerHandler: Send + Sync + 'static {
    /// One event. Keep it short: other peers' events wait behind it.
    fn on_event(&self, event: &PeerEvent);
}

pub(crate) struct PeerShared {
    pub id: u64,
    pub local_addrs: Vec<SocketAddr>,
    state: AtomicU8,
    /// The event handler; it runs with none of our locks held.
    handler: CallbackSlot<Arc<dyn PeerHandler>>,
    events_tx: Sender<PeerEvent>,
    events_rx: Receiver<PeerEvent>,
    pub events_dropped: AtomicU64,
    pub track_enabled: [AtomicBool; 3],
    pub closed: AtomicBool,
}

impl PeerShared {
    pub fn new(
        id: u64,
        local_addrs: Vec<SocketAddr>,
        handler: Option<Arc<dyn PeerHandler>>,
    ) -> Self {
        let (events_tx, events_rx) = bounded(limits::MAX_EVENT_QUEUE);
        PeerShared {
            id,
            local_addrs,
            state: AtomicU8::new(state_to_u8(PeerState::New)),
            handler: CallbackSlot::new(handler),
            events_tx,
            events_rx,
            events_dropped: AtomicU64::new(0),
            track_enabled: [
                AtomicBool::new(true),
                AtomicBool::new(true),
                AtomicBool::new(true),
            ],
            closed: AtomicBool::new(false),
        }
    }

    pub fn state(&self) -> PeerState {
        state_from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn set_state(&self, s: PeerState) {
        self.state.store(state_to_u8(s), Ordering::Release);
        if s == PeerState::Closed {
            self.closed.store(true, Ordering::Release);
        }
    }

    pub fn has_handler(&self) -> bool {
        self.handler.is_set()
    }

    /// Queues an event for `poll_event`, dropping the oldest when full (counted).
    pub fn queue_event(&self, mut ev: PeerEvent) {
        loop {
            match self.events_tx.try_send(ev) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    ev = back;
                    if self.events_rx.try_recv().is_ok() {
                        self.events_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    pub fn poll_event(&self, timeout: Option<Duration>) -> Option<PeerEvent> {
        match timeout {
            None => self.events_rx.try_recv().ok(),
            Some(t) => self.events_rx.recv_timeout(t).ok(),
        }
    }

    /// Runs the handler for one event (dispatcher thread only). A panic is caught and
    /// logged.
    pub fn dispatch(&self, ev: &PeerEvent) {
        self.handler.call(|h| h.on_event(ev));
    }

    /// Replaces or (with `None`) removes the handler. Events already queued for
    /// `poll_event` stay there. Like [`PeerShared::detach_handler`], it waits for a call
    /// of the old handler running on another thread.
    pub fn set_handler(&self, handler: Option<Arc<dyn PeerHandler>>) {
        self.handler.set(handler);
    }

    /// Removes the handler; when this returns no callback of this peer runs or will run
    /// (unless called from inside that very callback, which then finishes normally).
    pub fn detach_handler(&self) {
        self.handler.set(None);
    }
}

fn state_to_u8(s: PeerState) -> u8 {
    match s {
        PeerState::New => 0,
        PeerState::Connecting => 1,
        PeerState::Connected => 2,
        PeerState::Disconnected => 3,
        PeerState::Failed => 4,
        PeerState::Closed => 5,
    }
}

fn state_from_u8(v: u8) -> PeerState {
    match v {
        0 => PeerState::New,
        1 => PeerState::Connecting,
        2 => PeerState::Connected,
        3 => PeerState::Disconnected,
        4 => PeerState::Failed,
        _ => PeerState::Closed,
    }
}
