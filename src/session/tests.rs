//! The session on a virtual clock against an in-memory str0m client that behaves like
//! Pipecat's JS client. No sockets, no threads, no sleeping: time is an `Instant` we move.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::channel::ChannelId;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use super::*;

struct Pair {
    server: Session,
    client: Rtc,
    chan: Option<ChannelId>,
    now: Instant,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
    /// Texts the client received.
    received: Vec<String>,
    /// Events the server produced.
    events: Vec<SessionEvent>,
    /// Client-to-server traffic is dropped while true (a dead network).
    cut: bool,
}

fn crypto() -> Arc<str0m::config::CryptoProvider> {
    Arc::new(str0m::crypto::from_feature_flags())
}

impl Pair {
    fn new(with_channel: bool, cfg: SessionConfig) -> Pair {
        Pair::with_offer_edit(with_channel, cfg, |o| o)
    }

    /// Like `new`, with the offer's text passed through `edit` before the server sees it.
    fn with_offer_edit(
        with_channel: bool,
        cfg: SessionConfig,
        edit: impl Fn(String) -> String,
    ) -> Pair {
        let now = Instant::now();
        let server_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let client_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
        let mut rtc_cfg = RtcConfig::new()
            .set_crypto_provider(crypto())
            .set_reordering_size_audio(0);
        super::pace_consent_checks(&mut rtc_cfg);
        let mut rtc = rtc_cfg.build(now);
        rtc.add_local_candidate(Candidate::host(server_addr, "udp").unwrap());
        let server = Session::new(rtc, cfg, now);

        let mut client = RtcConfig::new().set_crypto_provider(crypto()).build(now);
        client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        if with_channel {
            api.add_channel("chat".into());
        }
        let (offer, pending) = api.apply().unwrap();
        let mut pair = Pair {
            server,
            client,
            chan: None,
            now,
            server_addr,
            client_addr,
            received: Vec::new(),
            events: Vec::new(),
            cut: false,
        };
        let answer = pair
            .server
            .accept_offer(&edit(offer.to_sdp_string()), now)
            .unwrap();
        let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
        pair.client
            .sdp_api()
            .accept_answer(pending, answer)
            .unwrap();
        pair
    }

    /// One round: move packets both ways, then advance the clock to the next timeout
    /// (at most `max_step`).
    fn step(&mut self, max_step: Duration) {
        // client → server
        let client_timeout = loop {
            // A client whose network is cut may fail its own timers: it just stops.
            let Ok(out) = self.client.poll_output() else {
                break self.now + Duration::from_secs(1);
            };
            match out {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    if !self.cut {
                        self.server
                            .handle_datagram(self.now, t.source, t.destination, &t.contents);
                    }
                }
                Output::Event(e) => self.client_event(e),
            }
        };
        // server → client
        while let Some(t) = self.server.poll_transmit() {
            let input = Input::Receive(
                self.now,
                Receive {
                    proto: Protocol::Udp,
                    source: t.source,
                    destination: t.destination,
                    contents: (&t.contents[..]).try_into().unwrap(),
                },
            );
            if !self.cut {
                self.client.handle_input(input).unwrap();
            }
        }
        while let Some(e) = self.server.poll_event() {
            self.events.push(e);
        }
        let next = client_timeout.min(self.server.poll_timeout());
        let next = next.max(self.now).min(self.now + max_step);
        self.now = next;
        let _ = self.client.handle_input(Input::Timeout(self.now));
        self.server.handle_timeout(self.now);
    }

    fn client_event(&mut self, e: Event) {
        match e {
            Event::ChannelOpen(id, _) => {
                self.chan = Some(id);
                // Pipecat's client announces its mic on open.
                self.client_send(
                    r#"{"type":"signalling","message":{"type":"trackStatus","receiver_index":0,"enabled":true}}"#,
                );
            }
            Event::ChannelData(d) => self
                .received
                .push(String::from_utf8_lossy(&d.data).into_owned()),
            _ => {}
        }
    }

    fn client_send(&mut self, text: &str) {
        let id = self.chan.expect("channel open");
        let mut ch = self.client.channel(id).unwrap();
        assert!(ch.write(false, text.as_bytes()).unwrap());
    }

    fn drive_until(&mut self, max_steps: usize, mut pred: impl FnMut(&mut Pair) -> bool) {
        for _ in 0..max_steps {
            if pred(self) {
                return;
            }
            self.step(Duration::from_millis(50));
        }
        panic!(
            "condition not reached; server state {:?}, events {:?}",
            self.server.state(),
            self.states()
        );
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step(Duration::from_millis(50));
        }
    }

    fn states(&self) -> Vec<PeerState> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::State(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    fn messages(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Message { data, .. } => Some(String::from_utf8_lossy(data).into()),
                _ => None,
            })
            .collect()
    }

    fn connected_and_open(&mut self) {
        self.drive_until(400, |p| p.chan.is_some() && p.server.channel.is_some());
    }

    fn ping(&mut self) {
        let ms = self.now.elapsed().as_millis();
        self.client_send(&format!("ping: {ms}"));
    }
}

#[test]
fn connected_is_delivered_only_after_app_connect() {
    let mut p = Pair::new(true, SessionConfig::default());
    p.connected_and_open();
    p.run_for(Duration::from_millis(200));
    assert!(
        !p.states().contains(&PeerState::Connected),
        "{:?}",
        p.states()
    );
    assert_eq!(p.states().last(), Some(&PeerState::Connecting));
    let now = p.now;
    p.server.connect(now).unwrap();
    p.step(Duration::from_millis(1));
    assert_eq!(p.states().last(), Some(&PeerState::Connected));
    assert_eq!(p.server.state(), PeerState::Connected);
}

#[test]
fn inbound_messages_are_held_until_connect_in_order() {
    let mut p = Pair::new(true, SessionConfig::default());
    p.connected_and_open();
    for i in 0..5 {
        p.client_send(&format!("{{\"i\":{i}}}"));
    }
    p.ping();
    p.run_for(Duration::from_millis(300));
    assert!(p.messages().is_empty(), "held until connect");
    assert!(p.events.iter().any(|e| matches!(
        e,
        SessionEvent::TrackStatus {
            receiver_index: 0,
            enabled: true
        }
    )));
    let now = p.now;
    p.server.connect(now).unwrap();
    p.step(Duration::from_millis(1));
    let want: Vec<String> = (0..5).map(|i| format!("{{\"i\":{i}}}")).collect();
    assert_eq!(
        p.messages(),
        want,
        "pings and signalling are not app messages"
    );
    assert_eq!(p.server.stats().pings_in, 1);
}

#[test]
fn outbound_messages_queue_before_open_then_flush_in_order() {
    let mut p = Pair::new(true, SessionConfig::default());
    let now = p.now;
    for i in 0..limits::MAX_PENDING_OUTBOUND {
        p.server
            .send_message(format!("m{i}").as_bytes(), false, now)
            .unwrap();
    }
    let e = p
        .server
        .send_message(b"one too many", false, now)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    p.drive_until(400, |p| p.received.len() >= limits::MAX_PENDING_OUTBOUND);
    let want: Vec<String> = (0..limits::MAX_PENDING_OUTBOUND)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(p.received, want);
    assert_eq!(p.server.stats().messages_out_dropped, 1);
}

#[test]
fn without_a_channel_messages_are_dropped_after_ten_seconds() {
    let mut p = Pair::new(false, SessionConfig::default());
    p.drive_until(400, |p| p.server.life.ever_connected());
    let now = p.now;
    p.server.send_message(b"queued", false, now).unwrap();
    p.run_for(limits::CHANNEL_OPEN_TIMEOUT + Duration::from_millis(100));
    let now = p.now;
    let e = p.server.send_message(b"late", false, now).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotConnected);
    assert_eq!(
        p.server.stats().messages_out_dropped,
        2,
        "queued one and late one"
    );
}

#[test]
fn ping_silence_disconnects_and_pings_reconnect() {
    let mut p = Pair::new(true, SessionConfig::default());
    p.connected_and_open();
    let now = p.now;
    p.server.connect(now).unwrap();
    for _ in 0..3 {
        p.ping();
        p.run_for(Duration::from_secs(1));
    }
    assert_eq!(p.server.state(), PeerState::Connected);
    p.run_for(limits::PING_WINDOW + Duration::from_millis(200));
    assert_eq!(p.server.state(), PeerState::Disconnected);
    p.ping();
    p.step(Duration::from_millis(1));
    p.step(Duration::from_millis(1));
    assert_eq!(p.server.state(), PeerState::Connected);
    assert_eq!(
        p.states(),
        vec![
            PeerState::Connecting,
            PeerState::Connected,
            PeerState::Disconnected,
            PeerState::Connected
        ]
    );
}

#[test]
fn a_dead_network_fails_then_closes() {
    let mut p = Pair::new(true, SessionConfig::default());
    p.connected_and_open();
    let now = p.now;
    p.server.connect(now).unwrap();
    p.cut = true;
    p.run_for(Duration::from_secs(90));
    let s = p.states();
    assert!(
        s.ends_with(&[PeerState::Failed, PeerState::Closed]),
        "{s:?}"
    );
    assert!(s.contains(&PeerState::Disconnected), "{s:?}");
    assert!(p.server.is_finished());
}

/// A client that never pings and sends no media vanishes: noticed within 5 s from the
/// silence alone, while the same client left alone (answering our consent checks) stays
/// connected; after the disconnected timeout the peer fails and closes.
#[test]
fn a_silent_client_that_vanishes_is_disconnected_within_5_s() {
    let mut p = Pair::new(true, SessionConfig::default());
    p.connected_and_open();
    let now = p.now;
    p.server.connect(now).unwrap();
    p.drive_until(20, |p| p.server.state() == PeerState::Connected);
    // Idle but present: only ICE traffic, for longer than every window.
    p.run_for(Duration::from_secs(12));
    assert_eq!(p.server.state(), PeerState::Connected, "{:?}", p.states());
    let cut_at = p.now;
    p.cut = true;
    p.drive_until(200, |p| p.server.state() == PeerState::Disconnected);
    let took = p.now - cut_at;
    assert!(took <= Duration::from_secs(5), "noticed after {took:?}");
    p.run_for(limits::DISCONNECTED_TIMEOUT + Duration::from_secs(1));
    let s = p.states();
    assert!(
        s.ends_with(&[PeerState::Failed, PeerState::Closed]),
        "{s:?}"
    );
    assert!(p.server.is_finished());
}

#[test]
fn connect_timeout_closes_a_peer_that_never_connects() {
    let cfg = SessionConfig {
        connection_timeout: Duration::from_secs(60),
        ..SessionConfig::default()
    };
    let mut p = Pair::new(true, cfg);
    p.cut = true;
    p.run_for(Duration::from_secs(59));
    assert_eq!(p.server.state(), PeerState::Connecting);
    p.run_for(Duration::from_secs(2));
    assert_eq!(
        p.states(),
        vec![PeerState::Connecting, PeerState::Failed, PeerState::Closed]
    );
}

#[test]
fn the_last_disconnect_sends_peer_left_and_closes() {
    let mut p = Pair::new(true, SessionConfig::default());
    p.connected_and_open();
    let now = p.now;
    p.server.connect(now).unwrap();
    p.server.connect(now).unwrap();
    p.server.disconnect(now);
    p.run_for(Duration::from_millis(200));
    assert_ne!(
        p.server.state(),
        PeerState::Closed,
        "one connect still holds it"
    );
    let now = p.now;
    p.server.disconnect(now);
    p.run_for(Duration::from_millis(200));
    assert!(
        p.received.iter().any(|m| m.contains("peerLeft")),
        "{:?}",
        p.received
    );
    assert_eq!(p.states().last(), Some(&PeerState::Closed));
    assert_eq!(
        p.states()
            .iter()
            .filter(|s| **s == PeerState::Closed)
            .count(),
        1,
        "closed is reported once"
    );
    let e = p.server.send_message(b"x", false, p.now).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
}

#[test]
fn bad_candidates_are_errors_and_empty_ends_gathering() {
    let mut p = Pair::new(true, SessionConfig::default());
    let now = p.now;
    for bad in [
        "garbage",
        "candidate:",
        "candidate:1 1 udp x 1.2.3.4 5 typ host",
        "a=candidate:1 1 udp 1 999.1.1.1 5 typ host",
    ] {
        let e = p.server.add_remote_candidate(bad, now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidCandidate, "{bad}");
    }
    p.server.add_remote_candidate("", now).unwrap();
    p.server
        .add_remote_candidate("candidate:1 1 udp 2130706431 10.0.0.2 6000 typ host", now)
        .unwrap();
    p.server
        .add_remote_candidate("a=candidate:1 1 udp 2130706431 10.0.0.2 6000 typ host", now)
        .unwrap();
    p.connected_and_open();
}

#[test]
fn offers_without_audio_and_garbage_offers_are_rejected() {
    let mut p = Pair::new(true, SessionConfig::default());
    let now = p.now;
    let e = p.server.accept_offer("v=0\r\nnot sdp", now).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidSdp);
    // A video-only offer from a fresh client.
    let mut c = RtcConfig::new().set_crypto_provider(crypto()).build(now);
    let mut api = c.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, _) = api.apply().unwrap();
    let e = p
        .server
        .accept_offer(&offer.to_sdp_string(), now)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidSdp);
    assert!(e.message().contains("audio"), "{e}");
    // The session still works after the bad input.
    p.connected_and_open();
}

#[test]
fn garbage_datagrams_are_counted_and_ignored() {
    let mut p = Pair::new(true, SessionConfig::default());
    let (src, dst) = (p.client_addr, p.server_addr);
    let now = p.now;
    let mut seed = 7u32;
    for len in [0usize, 1, 2, 12, 20, 100, 1500, 2000] {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect();
        p.server.handle_datagram(now, src, dst, &data);
    }
    assert!(p.server.stats().datagrams_dropped + p.server.stats().input_errors >= 1);
    p.connected_and_open();
}

#[test]
fn mdns_candidates_are_accepted_and_the_peer_is_learned_from_its_checks() {
    // Chromium hides private addresses behind `<uuid>.local` names. We cannot resolve them;
    // the client's first check teaches us its address (peer-reflexive) instead.
    let mdns = "candidate:1 1 udp 2122260223 4f3c2a1b-9d8e-4c7b-a6f5-1e2d3c4b5a69.local 54321 typ host generation 0";
    let mut p = Pair::with_offer_edit(true, SessionConfig::default(), |offer| {
        let lines: Vec<String> = offer
            .split("\r\n")
            .map(|l| {
                if l.starts_with("a=candidate:") {
                    format!("a={mdns}")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        assert!(lines.iter().any(|l| l.contains(".local")));
        lines.join("\r\n")
    });
    let now = p.now;
    p.server
        .add_remote_candidate(mdns, now)
        .expect("an mDNS candidate is not an error");
    p.server
        .add_remote_candidate(&format!("a={mdns}"), now)
        .unwrap();
    p.connected_and_open();
}
