//! Datagrams that arrive before str0m accepts their source. A client whose own check
//! succeeded starts DTLS at once, often a millisecond before our side's check of the same
//! pair comes back; str0m's `accepts()` says no until then, and dropping that ClientHello
//! costs the client's 1 s retransmission. So: a source that has sent us an authenticated
//! STUN check is trusted right away, and anything else is held (bounded in count, bytes and
//! age) until the pair is accepted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::limits;

/// One held datagram.
pub(super) struct Early {
    pub at: Instant,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub data: Vec<u8>,
}

/// What [`EarlyQueue::push`] did with a datagram.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// Kept.
    Kept,
    /// Over the count or byte bound: dropped.
    Full,
}

#[derive(Default)]
pub(super) struct EarlyQueue {
    items: VecDeque<Early>,
    bytes: usize,
    /// Sources of authenticated STUN checks and when each sent its first, newest last.
    checked: VecDeque<(SocketAddr, Instant)>,
}

impl EarlyQueue {
    /// `source` sent us a STUN binding request that passed str0m's integrity check.
    pub fn note_check(&mut self, source: SocketAddr, now: Instant) {
        if self.is_checked(source) {
            return;
        }
        if self.checked.len() >= limits::MAX_CHECKED_SOURCES {
            self.checked.pop_front();
        }
        self.checked.push_back((source, now));
    }

    /// Whether `source` has sent us an authenticated check.
    pub fn is_checked(&self, source: SocketAddr) -> bool {
        self.first_check(source).is_some()
    }

    /// When `source` sent us its first authenticated check.
    pub fn first_check(&self, source: SocketAddr) -> Option<Instant> {
        self.checked
            .iter()
            .find(|(a, _)| *a == source)
            .map(|(_, at)| *at)
    }

    /// Keeps a datagram unless that would pass a bound (new arrivals are the ones dropped:
    /// the first flight is what matters and it came first).
    pub fn push(
        &mut self,
        at: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> Held {
        if self.items.len() >= limits::MAX_EARLY_DATAGRAMS
            || self.bytes + data.len() > limits::MAX_EARLY_BYTES
        {
            return Held::Full;
        }
        self.bytes += data.len();
        self.items.push_back(Early {
            at,
            source,
            destination,
            data: data.to_vec(),
        });
        Held::Kept
    }

    /// Drops datagrams older than the time bound; returns how many.
    pub fn expire(&mut self, now: Instant) -> u64 {
        let mut n = 0;
        while let Some(e) = self.items.front() {
            if now.saturating_duration_since(e.at) < limits::EARLY_DATAGRAM_TTL {
                break;
            }
            self.bytes -= e.data.len();
            self.items.pop_front();
            n += 1;
        }
        n
    }

    /// Takes every held datagram out, in arrival order (give back the ones still not
    /// accepted with [`EarlyQueue::put_back`]).
    pub fn take_all(&mut self) -> VecDeque<Early> {
        self.bytes = 0;
        std::mem::take(&mut self.items)
    }

    /// Returns a datagram taken by `take_all` that is still waiting.
    pub fn put_back(&mut self, e: Early) {
        self.bytes += e.data.len();
        self.items.push_back(e);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// When the oldest held datagram expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.items
            .front()
            .map(|e| e.at + limits::EARLY_DATAGRAM_TTL)
    }
}
