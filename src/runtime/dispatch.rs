//! The dispatcher thread: runs app callbacks off the I/O thread so a slow callback never
//! stalls the network loop. The I/O thread never blocks on it: a full queue drops (counted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use tracing::warn;

use super::shared::{PeerEvent, PeerShared};
use crate::error::Result;

/// Events waiting for callbacks across all peers of a runtime.
const DISPATCH_QUEUE: usize = 65_536;

enum Job {
    Event(Arc<PeerShared>, PeerEvent),
    Stop,
}

#[derive(Clone)]
pub(crate) struct Dispatcher {
    tx: Sender<Job>,
    dropped: Arc<AtomicU64>,
}

impl Dispatcher {
    pub fn start() -> Result<(Dispatcher, JoinHandle<()>)> {
        let (tx, rx) = bounded(DISPATCH_QUEUE);
        let t = std::thread::Builder::new()
            .name("swrtc-callbacks".into())
            .spawn(move || run(rx))?;
        Ok((
            Dispatcher {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            t,
        ))
    }

    /// Hands an event to the peer's handler, or to its poll queue when it has none.
    pub fn deliver(&self, peer: &Arc<PeerShared>, ev: PeerEvent) {
        if !peer.has_handler() {
            peer.queue_event(ev);
            return;
        }
        match self.tx.try_send(Job::Event(peer.clone(), ev)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                peer.events_dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    warn!("callback queue full: {n} events dropped so far");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub fn shutdown(&self) {
        let _ = self.tx.send(Job::Stop);
    }
}

fn run(rx: Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        match job {
            Job::Event(peer, ev) => peer.dispatch(&ev),
            Job::Stop => return,
        }
    }
}
