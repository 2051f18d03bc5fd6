//! Entry points for the fuzz targets in `fuzz/` and for the corpus replay test: each takes
//! arbitrary bytes, drives one input path the way the library does, and panics only when
//! something that must hold for any input does not. Not part of the API.
//!
//! They are compiled in every build (not only under `cfg(fuzzing)`) so that `cargo test`
//! replays the committed corpus, crash inputs included, through the same code.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc, RtcConfig};

use crate::session::{sdp, Session, SessionConfig};

/// Where the fuzzed session lives.
const SERVER: &str = "10.0.0.1:5000";
/// The client's host candidate in [`client_offer`].
const CLIENT: &str = "10.0.0.2:6000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal address")
}

fn crypto() -> Arc<str0m::config::CryptoProvider> {
    Arc::new(str0m::crypto::from_feature_flags())
}

/// A session as the runtime builds one, with a host candidate, not yet offered.
fn new_session(now: Instant, cfg: SessionConfig) -> Session {
    let mut rtc_cfg = RtcConfig::new()
        .set_crypto_provider(crypto())
        .set_reordering_size_audio(0);
    crate::session::pace_consent_checks(&mut rtc_cfg);
    let mut rtc = rtc_cfg.build(now);
    if let Ok(c) = Candidate::host(addr(SERVER), "udp") {
        rtc.add_local_candidate(c);
    }
    Session::new(rtc, cfg, now)
}

/// A real offer (str0m's, shaped like Pipecat's JS client: audio, video, "chat"), made once.
fn client_offer() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| {
        let mut client: Rtc = RtcConfig::new()
            .set_crypto_provider(crypto())
            .build(Instant::now());
        if let Ok(c) = Candidate::host(addr(CLIENT), "udp") {
            client.add_local_candidate(c);
        }
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        api.add_channel("chat".into());
        let (offer, _) = api.apply().expect("a fresh client makes an offer");
        offer.to_sdp_string()
    })
}

/// Offers [`offer`] accepted so far in this process (the replay test checks its seeds get
/// past the parser, so the fuzzer starts deep).
pub static ACCEPTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Splits `data` into pieces: each piece's length is its first byte (0 = the rest).
fn pieces(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&n, tail) = rest.split_first()?;
        let n = if n == 0 {
            tail.len()
        } else {
            usize::from(n).min(tail.len())
        };
        let (piece, after) = tail.split_at(n);
        rest = after;
        Some(piece)
    })
}

/// The offer path: our SDP checks, the ESP32 normalisation, and str0m's offer handling in
/// a session. The first byte's low bit sets `require_audio`; the rest is the offer. An
/// accepted offer's answer names the same m-lines.
pub fn offer(data: &[u8]) {
    let text = String::from_utf8_lossy(data.get(1..).unwrap_or_default());
    let _ = sdp::media_lines(&text);
    let _ = sdp::ice_ufrag(&text);
    let mut session = new_session(
        Instant::now(),
        SessionConfig {
            require_audio: data.first().is_some_and(|b| b & 1 == 1),
            ..SessionConfig::default()
        },
    );
    let answer = match session.accept_offer(&text, Instant::now()) {
        Ok(answer) => answer,
        Err(e) => {
            // Our checks must refuse what the WebRTC stack cannot take, before it asserts.
            assert!(
                !e.to_string().contains("could not apply"),
                "str0m panicked on an offer our checks let through:\n{text}"
            );
            return;
        }
    };
    ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (_, offered) = sdp::parse_offer(&text).expect("an accepted offer parses");
    let answered = sdp::media_lines(&answer);
    assert_eq!(offered.len(), answered.len(), "{text}\n---\n{answer}");
    #[cfg(feature = "signalling")]
    {
        use crate::signalling::esp32;
        if esp32::is_esp32_offer(&text) {
            if let Ok(small) = esp32::compact_answer(&answer, &text, None) {
                assert!(small.len() <= answer.len() || small.contains("SAVP"));
            }
        }
    }
}

/// Data-channel messages as they arrive from a client: the signalling classifier and the
/// RTVI parsers. Each piece of `data` is one message; the first byte's low bit says binary.
pub fn dc_message(data: &[u8]) {
    let binary = data.first().is_some_and(|b| b & 1 == 1);
    for msg in pieces(data.get(1..).unwrap_or_default()) {
        let _ = crate::messages::classify(msg, binary);
        let _ = crate::rtvi::parse_client_ready(msg);
        if let Some(reply) = crate::rtvi::reply_to(msg) {
            assert!(
                serde_json::from_str::<serde_json::Value>(&reply).is_ok(),
                "{reply}"
            );
        }
    }
}

/// Trickled candidates into an answered session, one per line of `data`, with the limit
/// on remote candidates holding whatever comes.
pub fn candidates(data: &[u8]) {
    let now = Instant::now();
    let mut session = new_session(now, SessionConfig::default());
    session
        .accept_offer(client_offer(), now)
        .expect("the reference offer is accepted");
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = session.add_remote_candidate(line, now);
    }
    #[cfg(feature = "signalling")]
    {
        let _ = crate::signalling::whip::parse_sdpfrag(&text);
        let _ = crate::signalling::whip::query_object(&text);
    }
    session.handle_timeout(now + Duration::from_millis(50));
    while session.poll_transmit().is_some() {}
    while session.poll_event().is_some() {}
}

/// Datagrams into an answered session: each piece of `data` is one datagram; its first
/// byte picks the source (the client's candidate, a stranger, or an IPv6 stranger) and how
/// far the clock moves. Whatever arrives, the session keeps answering its timers.
pub fn datagrams(data: &[u8]) {
    let start = Instant::now();
    let mut now = start;
    let mut session = new_session(now, SessionConfig::default());
    session
        .accept_offer(client_offer(), now)
        .expect("the reference offer is accepted");
    let sources = [addr(CLIENT), addr("10.9.9.9:4444"), addr("[fd00::9]:4444")];
    for piece in pieces(data) {
        let Some((&how, datagram)) = piece.split_first() else {
            continue;
        };
        now += Duration::from_millis(u64::from(how >> 2));
        let source = sources[usize::from(how & 3) % sources.len()];
        if datagram.len() > crate::limits::MAX_DATAGRAM {
            session.count_dropped_datagram();
        } else {
            session.handle_datagram(now, source, addr(SERVER), datagram);
        }
        if now >= session.poll_timeout() {
            session.handle_timeout(now);
        }
        while session.poll_transmit().is_some() {}
        while session.poll_event().is_some() {}
    }
    assert!(session.poll_timeout() >= start);
}

/// The signalling server's HTTP request parser on bytes fed in pieces (the first byte sets
/// their size) as a socket would: no panic, bodies and held bytes bounded.
#[cfg(feature = "signalling")]
pub fn http_request(data: &[u8]) {
    crate::signalling::fuzz_http_request(data);
}

/// Route bodies through the signalling routes of one server: the first byte picks the
/// method and route (Pipecat's offer, PATCH, `/start`, WHIP and WHEP), the rest is the
/// body. Every reply is a well-formed status; errors are 4xx/5xx with a message.
#[cfg(feature = "signalling")]
pub fn routes(data: &[u8]) {
    use crate::signalling::{routes, Registry, Request, ServerConfig};
    static REGISTRY: OnceLock<Option<Registry>> = OnceLock::new();
    let Some(reg) = REGISTRY.get_or_init(|| Registry::new(ServerConfig::default(), None).ok())
    else {
        return;
    };
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (method, path, content_type) = match pick % 8 {
        0 => ("POST", "/api/offer", "application/json"),
        1 => ("PATCH", "/api/offer", "application/json"),
        2 => ("POST", "/start", "application/json"),
        3 => ("POST", "/sessions/x/api/offer", "application/json"),
        4 => ("POST", "/whip", "application/sdp"),
        5 => ("POST", "/whep", "application/sdp"),
        6 => ("PATCH", "/whip/x", "application/trickle-ice-sdpfrag"),
        _ => ("DELETE", "/whep/x", "text/plain"),
    };
    let mut req = Request::new(method, path, body.to_vec());
    req.headers
        .push(("Content-Type".into(), content_type.into()));
    let resp = routes::handle(&req, reg);
    assert!((100..600).contains(&resp.status), "{}", resp.status);
    // Peers that were created are ended at once, so memory stays flat over a long run.
    for pc_id in reg.pc_ids() {
        let _ = reg.end(&pc_id);
    }
}
