//! Early datagrams on a virtual clock: the client's first DTLS flight arrives while our
//! check of its pair is still out (the race libdatachannel clients win ~40 % of the time on
//! loopback), a first flight right after the client's first check waits for the hold, our
//! checks wait for the client's first (or the wait), and strangers' datagrams stay within the
//! bounds.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use std::sync::atomic::Ordering;

use super::*;
use crate::limits;
use crate::runtime::demux::{Demux, DemuxCounters};

/// A server session, a str0m client (DTLS client, ICE controlling, like every Pipecat
/// client) and a network that can hold back the client's STUN responses.
struct Net {
    server: Session,
    client: Rtc,
    now: Instant,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
    /// Client → server datagrams in flight: (arrival, bytes).
    to_server: VecDeque<(Instant, Vec<u8>)>,
    /// Extra delay of the client's STUN success responses (the answers to our checks).
    response_delay: Duration,
    client_open: Option<Instant>,
    /// The shared-UDP-port demultiplexer in front of the server (slot 0), when set.
    demux: Option<Demux>,
    /// When the client's first binding request reached the server.
    first_check_at: Option<Instant>,
    /// When the server sent its first DTLS datagram.
    first_dtls_out: Option<Instant>,
    /// When the server sent its first binding request.
    first_server_check: Option<Instant>,
}

impl Net {
    fn new(response_delay: Duration) -> Net {
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let now = Instant::now();
        let server_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let client_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(crypto.clone())
            .build(now);
        rtc.add_local_candidate(Candidate::host(server_addr, "udp").unwrap());
        let mut server = Session::new(rtc, SessionConfig::default(), now);
        let mut client = RtcConfig::new().set_crypto_provider(crypto).build(now);
        client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        api.add_channel("chat".into());
        let (offer, pending) = api.apply().unwrap();
        let answer = server.accept_offer(&offer.to_sdp_string(), now).unwrap();
        client
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        Net {
            server,
            client,
            now,
            server_addr,
            client_addr,
            to_server: VecDeque::new(),
            response_delay,
            client_open: None,
            demux: None,
            first_check_at: None,
            first_dtls_out: None,
            first_server_check: None,
        }
    }

    /// Moves packets both ways, then advances the clock by at most 5 ms.
    fn step(&mut self) {
        let client_timeout = loop {
            match self.client.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let response = t.contents.len() >= 2 && t.contents[..2] == [0x01, 0x01];
                    let delay = if response {
                        self.response_delay
                    } else {
                        Duration::ZERO
                    };
                    self.to_server
                        .push_back((self.now + delay, t.contents.to_vec()));
                }
                Output::Event(Event::ChannelOpen(..)) => {
                    self.client_open.get_or_insert(self.now);
                }
                Output::Event(_) => {}
            }
        };
        // Deliver what is due, oldest first (a delayed response does not hold back others).
        let mut later = VecDeque::new();
        while let Some((at, data)) = self.to_server.pop_front() {
            if at <= self.now {
                if data.len() >= 2 && data[..2] == [0x00, 0x01] {
                    self.first_check_at.get_or_insert(self.now);
                }
                let (src, dst) = (self.client_addr, self.server_addr);
                match self.demux.as_mut() {
                    Some(d) => {
                        let server = &mut self.server;
                        d.feed(self.now, src, dst, &data, |slot| {
                            (slot == 0).then_some(server)
                        });
                    }
                    None => self.server.handle_datagram(self.now, src, dst, &data),
                }
            } else {
                later.push_back((at, data));
            }
        }
        self.to_server = later;
        while let Some(t) = self.server.poll_transmit() {
            if (20..=63).contains(&t.contents[0]) {
                self.first_dtls_out.get_or_insert(self.now);
            }
            if t.contents[..2] == [0x00, 0x01] {
                self.first_server_check.get_or_insert(self.now);
            }
            if let Some(d) = self.demux.as_mut() {
                d.note_sent(0, t.destination, &t.contents, self.now);
            }
            let contents = (&t.contents[..]).try_into().unwrap();
            let input = Input::Receive(
                self.now,
                Receive {
                    proto: Protocol::Udp,
                    source: t.source,
                    destination: t.destination,
                    contents,
                },
            );
            self.client.handle_input(input).unwrap();
        }
        while self.server.poll_event().is_some() {}
        let mut next = client_timeout.min(self.server.poll_timeout());
        if let Some((at, _)) = self.to_server.iter().min_by_key(|(at, _)| *at) {
            next = next.min(*at);
        }
        self.now = next.clamp(self.now, self.now + Duration::from_millis(5));
        self.client.handle_input(Input::Timeout(self.now)).unwrap();
        self.server.handle_timeout(self.now);
    }

    /// Runs until the client's data channel is open; returns the virtual time it took.
    fn open_within(&mut self, limit: Duration) -> Duration {
        let start = self.now;
        while self.client_open.is_none() {
            assert!(
                self.now - start < limit,
                "no data channel after {limit:?}; stats {:?}",
                self.server.stats()
            );
            self.step();
        }
        self.client_open.unwrap() - start
    }
}

#[test]
fn dtls_before_our_check_succeeds_is_not_lost() {
    // Our check's answer comes back 40 ms late: the client is connected on its side and
    // sends its ClientHello before str0m accepts the pair. Dropping it costs the client's
    // 1 s DTLS retransmission; keeping it opens the channel once the pair is nominated.
    let mut net = Net::new(Duration::from_millis(40));
    let took = net.open_within(Duration::from_secs(3));
    let stats = net.server.stats().clone();
    assert!(
        stats.early_delivered >= 1,
        "the race did not happen (nothing arrived early): {stats:?}"
    );
    assert_eq!(stats.early_dropped, 0, "{stats:?}");
    assert!(
        took < Duration::from_millis(500),
        "channel open after {took:?}: the first flight was lost; {stats:?}"
    );
}

#[test]
fn dtls_before_our_check_succeeds_is_not_lost_behind_a_shared_port() {
    // The same race with the server behind the shared UDP port's demultiplexer: the
    // client's address is bound by its authenticated check, so its ClientHello reaches the
    // session (and is accepted early) although str0m has not accepted the pair yet.
    let mut net = Net::new(Duration::from_millis(40));
    let counters = Arc::new(DemuxCounters::default());
    let mut demux = Demux::new(counters.clone());
    assert!(demux.set_ufrag(0, &net.server.local_ufrag()));
    net.demux = Some(demux);
    let took = net.open_within(Duration::from_secs(3));
    let stats = net.server.stats().clone();
    assert!(stats.early_delivered >= 1, "no race: {stats:?}");
    assert_eq!(stats.early_dropped, 0, "{stats:?}");
    assert!(
        took < Duration::from_millis(500),
        "open after {took:?}; {stats:?}"
    );
    assert_eq!(
        net.demux.as_ref().unwrap().slot_of(net.client_addr),
        Some(0)
    );
    assert_eq!(counters.dropped_unbound.load(Ordering::Relaxed), 0);
    assert_eq!(counters.dropped_unknown_ufrag.load(Ordering::Relaxed), 0);
}

#[test]
fn without_the_race_nothing_is_early() {
    let mut net = Net::new(Duration::ZERO);
    net.open_within(Duration::from_secs(3));
    let stats = net.server.stats();
    assert_eq!(stats.early_dropped, 0, "{stats:?}");
}

#[test]
fn a_first_dtls_flight_right_after_the_first_check_waits_for_the_hold() {
    // On a virtual clock with no delays the client starts DTLS the moment its check is
    // answered, as libdatachannel does while it is still storing our answer: our reply
    // must leave no sooner than the hold after that check, and exactly then.
    let mut net = Net::new(Duration::ZERO);
    net.open_within(Duration::from_secs(3));
    let s = net.server.stats().clone();
    assert!(
        s.first_flight_held >= 1,
        "the first flight was not held: {s:?}"
    );
    assert_eq!(s.early_dropped, 0, "{s:?}");
    let check = net.first_check_at.expect("no check reached the server");
    let reply = net.first_dtls_out.expect("the server sent no DTLS");
    let hold = limits::DTLS_FIRST_FLIGHT_HOLD;
    assert!(
        reply >= check + hold,
        "our DTLS left {:?} after the client's first check (hold {hold:?})",
        reply - check
    );
    assert!(
        reply < check + hold + Duration::from_millis(1),
        "our DTLS left {:?} after the client's first check: held past the hold",
        reply - check
    );
}

#[test]
fn our_checks_wait_for_the_clients_first_check() {
    // A check that reaches the client before it has our answer teaches it our address
    // early (see `limits::REMOTE_CANDIDATE_WAIT`): none goes before the client's own.
    let mut net = Net::new(Duration::ZERO);
    net.open_within(Duration::from_secs(3));
    let theirs = net.first_check_at.expect("no client check");
    let ours = net.first_server_check.expect("we never checked the client");
    assert!(
        ours >= theirs,
        "our first check left {:?} before the client's",
        theirs - ours
    );
    assert!(
        ours < theirs + Duration::from_millis(1),
        "our first check waited {:?} after the client's",
        ours - theirs
    );
}

#[test]
fn a_client_that_never_checks_still_gets_our_checks_after_the_wait() {
    // A bot behind a NAT must send first: without a check from the client, ours go out once
    // the wait is over (and not before).
    let mut net = Net::new(Duration::ZERO);
    let start = net.now;
    let wait = limits::REMOTE_CANDIDATE_WAIT;
    let mut first = None;
    let mut now = start;
    while first.is_none() && now < start + wait * 4 {
        net.server.handle_timeout(now);
        while let Some(t) = net.server.poll_transmit() {
            if t.contents[..2] == [0x00, 0x01] && t.destination == net.client_addr {
                first.get_or_insert(now);
            }
        }
        now = net
            .server
            .poll_timeout()
            .clamp(now + Duration::from_millis(1), now + wait);
    }
    let first = first.expect("no check to the client's candidate at all");
    assert!(
        first >= start + wait,
        "a check went {:?} after the offer",
        first - start
    );
    assert!(
        first < start + wait + Duration::from_millis(2),
        "checks began only after {:?}",
        first - start
    );
}

/// A DTLS-looking record (content type 22, DTLS 1.2) of `len` bytes.
fn dtls_junk(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    v[..3].copy_from_slice(&[22, 0xfe, 0xfd]);
    v
}

#[test]
fn strangers_are_held_within_bounds_then_expire() {
    let mut net = Net::new(Duration::ZERO);
    let stranger: SocketAddr = "10.0.0.66:4444".parse().unwrap();
    let (dst, now) = (net.server_addr, net.now);
    let n = limits::MAX_EARLY_DATAGRAMS + 4;
    for _ in 0..n {
        net.server
            .handle_datagram(now, stranger, dst, &dtls_junk(200));
    }
    let s = net.server.stats().clone();
    assert_eq!(s.early_held, limits::MAX_EARLY_DATAGRAMS as u64, "{s:?}");
    assert_eq!(s.early_dropped, 4, "{s:?}");
    assert_eq!(s.early_delivered, 0, "{s:?}");
    // The byte bound: 1500-byte datagrams fill it before the count bound.
    let mut net = Net::new(Duration::ZERO);
    let (dst, now) = (net.server_addr, net.now);
    let fit = limits::MAX_EARLY_BYTES / 1500;
    assert!(fit < limits::MAX_EARLY_DATAGRAMS);
    for _ in 0..fit + 2 {
        net.server
            .handle_datagram(now, stranger, dst, &dtls_junk(1500));
    }
    let s = net.server.stats().clone();
    assert_eq!(s.early_held, fit as u64, "{s:?}");
    assert_eq!(s.early_dropped, 2, "{s:?}");
    let full = s.early_dropped;
    // The client still connects beside the stranger; the stranger's datagrams expire and
    // are counted, never handed to str0m.
    net.open_within(Duration::from_secs(3));
    let end = net.now + limits::EARLY_DATAGRAM_TTL + Duration::from_millis(100);
    while net.now < end {
        net.step();
    }
    let s = net.server.stats().clone();
    assert_eq!(s.early_delivered, 0, "{s:?}");
    assert_eq!(s.early_dropped, full + s.early_held, "{s:?}");
    assert!(net.server.early.is_empty(), "expired datagrams still held");
}
