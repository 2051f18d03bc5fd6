//! The echo bot behind the real HTTP server, driven by a libdatachannel peer shaped like
//! Pipecat's C++ SmallWebRTC transport (one audio sendrecv m-line, the "chat" channel, the
//! full offer without trickle, client-ready, pings) over 127.0.0.1: 50 connects in a row,
//! the tone echoed back, app messages both ways, and a clean disconnect seen by both sides.
//! The connect-time targets live in the connect bench (`cargo bench --bench connect --
//! stacks`); here the bar is only loose enough for a busy 2-core machine.

mod common;
#[path = "common/ldc_peer.rs"]
mod ldc_peer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::str0m_client::tone;
use ldc_peer::{connect_new, Connected, LdcEvent, LdcPeer};
use serde_json::{json, Value};
use smallwebrtc::media::audio::{OpusDecoder, OpusEncoder};
use smallwebrtc::signalling::{echo, Server, ServerConfig, ServerLimits};
use smallwebrtc::{Peer, PeerState};

const T: Duration = Duration::from_secs(15);
/// No connect may come near the 1 s of a lost first DTLS flight (OpenSSL's retransmission).
const CONNECT_BAR: Duration = Duration::from_millis(500);

fn echo_server() -> Server {
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        peer: echo::echo_peer_config(),
        // Every client comes from 127.0.0.1: no per-source caps here.
        limits: ServerLimits {
            max_peers_per_source: usize::MAX,
            max_connecting_peers_per_source: usize::MAX,
            ..ServerLimits::default()
        },
        ..ServerConfig::default()
    };
    Server::start(cfg, Some(echo::on_peer(true))).expect("server starts")
}

/// Connects a new peer, in one attempt: libdatachannel starts DTLS before it has stored our
/// answer, and our first DTLS flight waits for it (`DTLS_FIRST_FLIGHT_HOLD`); a certificate
/// it rejects fails here.
fn connect(server: &Server) -> Connected {
    connect_new(server.local_addr(), T).unwrap_or_else(|e| panic!("libdatachannel connect: {e}"))
}

fn wait_closed(peer: &Peer, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while peer.state() != PeerState::Closed {
        if t0.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Some(t0.elapsed())
}

/// Sends client-ready and waits for the bot-ready that answers it.
fn ready(client: &mut LdcPeer, id: &str) {
    client.send_client_ready(id).expect("send client-ready");
    let msg = client
        .wait_for(
            T,
            |e| matches!(e, LdcEvent::Message(m) if m.contains("bot-ready")),
        )
        .expect("no bot-ready");
    let LdcEvent::Message(m) = msg else {
        unreachable!()
    };
    let v: Value = serde_json::from_str(&m).expect("bot-ready is JSON");
    assert_eq!(v["label"], "rtvi-ai");
    assert_eq!(v["id"], id, "bot-ready answers our client-ready");
}

#[test]
fn fifty_connects_in_a_row_open_get_ready_and_close() {
    let server = echo_server();
    let mut times = Vec::new();
    for i in 0..50 {
        let Connected {
            peer: mut client,
            pc_id,
            took,
        } = connect(&server);
        times.push(took);
        let peer = server
            .registry()
            .peer(&pc_id)
            .expect("the server knows the pc_id");
        ready(&mut client, &format!("ready-{i}"));
        client.close();
        assert!(
            wait_closed(&peer, T).is_some(),
            "connect {i}: our peer never saw the client leave ({:?})",
            peer.state()
        );
    }
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    eprintln!(
        "libdatachannel POST -> channel open, 50 connects (ms): {}",
        ms.iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    ms.sort_by(|a, b| a.total_cmp(b));
    eprintln!("median {:.1} ms, max {:.1} ms", ms[25], ms[49]);
    let slow: Vec<_> = times.iter().filter(|t| **t >= CONNECT_BAR).collect();
    assert!(
        slow.is_empty(),
        "connects at or over {CONNECT_BAR:?}: {slow:?}"
    );
}

/// Frequency of a mono signal by rising zero crossings.
fn frequency(samples: &[i16], rate: u32) -> f64 {
    let rising = samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
    rising as f64 * rate as f64 / samples.len() as f64
}

fn rms_dbfs(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let rms = (sum / samples.len().max(1) as f64).sqrt();
    20.0 * (rms.max(1e-9) / 32768.0).log10()
}

#[test]
fn tone_and_app_messages_echo_both_ways() {
    let server = echo_server();
    let mut client = connect(&server).peer;
    ready(&mut client, "audio-1");

    // App messages: ours reach the bot, the bot's echo reaches us, in order.
    for n in 0..20 {
        client
            .send_text(&json!({"n": n, "from": "libdatachannel"}).to_string())
            .unwrap();
    }
    for n in 0..20 {
        let want = json!({"echo": {"n": n, "from": "libdatachannel"}});
        let got = client.wait_for(T, |e| {
            matches!(e, LdcEvent::Message(m)
                if serde_json::from_str::<Value>(m).ok().as_ref() == Some(&want))
        });
        assert!(got.is_some(), "no echo of app message {n}");
    }

    // Audio: a 440 Hz tone in real time until one second of the echo has it (±5 %).
    const HZ: f64 = 440.0;
    let mut enc = OpusEncoder::new(48_000, 1, 32_000, 5, false).unwrap();
    let mut dec = OpusDecoder::new(48_000, 1).unwrap();
    let mut out = vec![0u8; 4000];
    let mut pcm = vec![0i16; 5760];
    let mut heard: Vec<i16> = Vec::new();
    let (mut received, mut last) = (0u64, 0.0);
    let start = Instant::now();
    let mut i: u64 = 0;
    let found = loop {
        assert!(
            start.elapsed() < T,
            "the echo never carried {HZ} Hz (last {last:.1} Hz, {received} packets)"
        );
        let n = enc
            .encode(&tone(HZ as f32, i * 960, 960, 48_000), &mut out)
            .unwrap();
        client.send_opus(&out[..n], (i * 960) as u32).unwrap();
        i += 1;
        for ev in client.take_events() {
            if let LdcEvent::Rtp { payload, .. } = ev {
                received += 1;
                if let Ok(k) = dec.decode(&payload, &mut pcm) {
                    heard.extend_from_slice(&pcm[..k]);
                }
            }
        }
        if heard.len() > 48_000 {
            heard.drain(..heard.len() - 48_000);
            last = frequency(&heard, 48_000);
            if rms_dbfs(&heard) > -40.0 && (last - HZ).abs() < HZ * 0.05 {
                break last;
            }
        }
        let due = start + Duration::from_millis(20 * i);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    };
    eprintln!(
        "echoed tone {found:.1} Hz heard after {:.2} s ({received} RTP packets back, {} events dropped)",
        start.elapsed().as_secs_f64(),
        client.dropped_events()
    );
    client.close();
}

#[test]
fn clean_disconnect_is_seen_by_both_sides() {
    let server = echo_server();

    // The client leaves: our peer goes Closed promptly (no consent timeout).
    let Connected {
        peer: mut client,
        pc_id,
        ..
    } = connect(&server);
    let peer: Arc<Peer> = server.registry().peer(&pc_id).unwrap();
    ready(&mut client, "leave-1");
    client.close();
    let took = wait_closed(&peer, T).expect("our peer never saw the client leave");
    assert!(
        took < Duration::from_secs(2),
        "the client's goodbye took {took:?}"
    );
    eprintln!(
        "client leaves: our peer Closed after {:.1} ms",
        took.as_secs_f64() * 1e3
    );

    // The bot ends the session: the libdatachannel peer sees its channel close and the
    // connection end, well before any consent timeout.
    let Connected {
        peer: mut client,
        pc_id,
        ..
    } = connect(&server);
    ready(&mut client, "leave-2");
    let t0 = Instant::now();
    server.registry().end(&pc_id).expect("end the session");
    assert!(
        client
            .wait_for(Duration::from_secs(5), |e| *e == LdcEvent::ChannelClosed)
            .is_some(),
        "the libdatachannel peer never saw its channel close"
    );
    let chan = t0.elapsed();
    let state = client.wait_for(Duration::from_secs(5), |e| {
        matches!(e, LdcEvent::State("closed" | "disconnected" | "failed"))
    });
    assert!(state.is_some(), "the libdatachannel connection never ended");
    eprintln!(
        "bot ends: channel closed after {:.1} ms, connection {:?} after {:.1} ms",
        chan.as_secs_f64() * 1e3,
        state,
        t0.elapsed().as_secs_f64() * 1e3
    );
}
