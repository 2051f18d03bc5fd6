//! Datagrams that arrive before str0m accepts their source. A client whose own check
//! succeeded starts DTLS at once, often a millisecond before our side's check of the same
//! pair comes back; str0m's `accepts()` says no until then, and dropping that ClientHello
//! costs the client's 1 s retransmission. So: a source that has sent us an authenticated
//! STUN check is trusted right away, and anything else is held (bounded in count, bytes and
//! age) until the pair is accepted.
//!
//! Two waits keep a client's ICE agent from connecting before it has read our answer (which
//! libdatachannel does when our checks reach it first): our checks go to the first offer's
//! candidates only once the client has checked us (or after `limits::REMOTE_CANDIDATE_WAIT`),
//! and the client's first DTLS flight reaches str0m no sooner than
//! `limits::DTLS_FIRST_FLIGHT_HOLD` after its first check.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Input};
use tracing::debug;

use super::{is_mdns_candidate, sdp, Session};
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

/// The session's side of it: holding, releasing, and the two waits that keep a client's ICE
/// agent from connecting before it has our answer (`limits::DTLS_FIRST_FLIGHT_HOLD`,
/// `limits::REMOTE_CANDIDATE_WAIT`).
impl Session {
    /// When a DTLS datagram from `source` may go to str0m, if not now: the client's first
    /// flight waits until `limits::DTLS_FIRST_FLIGHT_HOLD` after that source's first
    /// authenticated check (see there why).
    pub(super) fn first_flight_wait(
        &self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
    ) -> Option<Instant> {
        if self.dtls_fed || !is_dtls(data) {
            return None;
        }
        let due = self.early.first_check(source)? + limits::DTLS_FIRST_FLIGHT_HOLD;
        (now < due).then_some(due)
    }

    pub(super) fn note_fed(&mut self, data: &[u8]) {
        if is_dtls(data) {
            self.dtls_fed = true;
        }
    }

    /// Whether str0m takes a held datagram now: its source is accepted, or has sent an
    /// authenticated check since it arrived.
    pub(super) fn releasable(&self, now: Instant, e: &Early) -> bool {
        if self.early.is_checked(e.source) {
            return true;
        }
        let Ok(contents) = DatagramRecv::try_from(&e.data[..]) else {
            return false; // cannot happen (parsed when held); expires like a stranger's
        };
        self.rtc.accepts(&Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: e.source,
                destination: e.destination,
                contents,
            },
        ))
    }

    /// Hands a held datagram to str0m (the caller drains).
    pub(super) fn feed_held(&mut self, now: Instant, e: &Early) {
        let Ok(contents) = DatagramRecv::try_from(&e.data[..]) else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: e.source,
                destination: e.destination,
                contents,
            },
        );
        self.note_fed(&e.data);
        self.stats.datagrams_in += 1;
        if let Err(err) = self.rtc.handle_input(input) {
            self.stats.input_errors += 1;
            debug!("held datagram from {} rejected: {err}", e.source);
        }
    }

    /// Keeps a datagram of the client's first DTLS flight until `due`.
    pub(super) fn hold_flight(
        &mut self,
        now: Instant,
        due: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        match self.flight.push(now, source, destination, data) {
            Held::Kept => {
                self.stats.first_flight_held += 1;
                self.first_flight_due = Some(due);
            }
            Held::Full => {
                self.stats.early_dropped += 1;
                self.stats.datagrams_dropped += 1;
            }
        }
    }

    pub(super) fn hold_early(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.drop_expired_early(now);
        match self.early.push(now, source, destination, data) {
            Held::Kept => self.stats.early_held += 1,
            Held::Full => {
                self.stats.early_dropped += 1;
                self.stats.datagrams_dropped += 1;
            }
        }
    }

    pub(super) fn drop_expired_early(&mut self, now: Instant) {
        let n = self.early.expire(now);
        self.stats.early_dropped += n;
        self.stats.datagrams_dropped += n;
    }

    /// Feeds every held datagram whose source str0m now accepts (or that has sent an
    /// authenticated check since), in arrival order; the rest wait. A held first DTLS flight
    /// goes once its hold is over.
    pub(super) fn release_early(&mut self, now: Instant) {
        let mut released = false;
        if !self.early.is_empty() {
            self.drop_expired_early(now);
            for e in self.early.take_all() {
                if !self.releasable(now, &e) {
                    self.early.put_back(e);
                    continue;
                }
                self.stats.early_delivered += 1;
                match self.first_flight_wait(now, e.source, &e.data) {
                    // Held before its source was checked: it now waits for the hold.
                    Some(due) => self.hold_flight(e.at, due, e.source, e.destination, &e.data),
                    None => {
                        self.feed_held(now, &e);
                        released = true;
                    }
                }
            }
        }
        if self.first_flight_due.is_some_and(|due| now >= due) {
            self.first_flight_due = None;
            for e in self.flight.take_all() {
                self.feed_held(now, &e);
                released = true;
            }
        }
        if released {
            self.drain(now);
        }
    }

    /// The first offer as str0m gets it: without its candidates, which are returned to be
    /// withheld (see `limits::REMOTE_CANDIDATE_WAIT`). The offer was already checked whole;
    /// if the rest does not parse on its own, it goes whole and nothing is withheld.
    pub(super) fn offer_without_candidates(
        &self,
        sdp_text: &str,
        offer: &mut str0m::change::SdpOffer,
    ) -> Vec<String> {
        let (text, candidates) = sdp::split_candidates(sdp_text);
        if candidates.is_empty() {
            return candidates;
        }
        match sdp::parse_offer(&text) {
            Ok((bare, _)) => {
                *offer = bare;
                candidates
            }
            Err(_) => Vec::new(),
        }
    }

    /// Hands the withheld candidates to str0m, whose checks to them start at once.
    pub(super) fn release_candidates(&mut self, now: Instant) {
        if self.withheld_until.take().is_none() {
            return;
        }
        for text in std::mem::take(&mut self.withheld) {
            if is_mdns_candidate(&text) {
                continue; // learned from the client's checks instead
            }
            match Candidate::from_sdp_string(&text)
                .or_else(|_| Candidate::from_sdp_string(&format!("candidate:{text}")))
            {
                Ok(c) => self.rtc.add_remote_candidate(c),
                Err(e) => debug!("offer candidate {text:?} skipped: {e}"),
            }
        }
        self.mutate(now, |rtc| rtc.handle_input(Input::Timeout(now)));
    }
}

/// DTLS records start with a content type in 20..=63 (RFC 7983).
fn is_dtls(data: &[u8]) -> bool {
    data.first().is_some_and(|b| (20..=63).contains(b))
}
