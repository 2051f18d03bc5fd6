//! Echo demo until the HTTP signalling server lands: reads an SDP offer on stdin (up to
//! EOF), prints the answer, then echoes every app message `m` as `{"echo": m}` until the
//! client leaves. Paste the offer from any WebRTC client (the answer carries host
//! candidates, so no trickle is needed).
//!
//!     cargo run --example answer_stdin < offer.sdp
//!     SWRTC_BIND=127.0.0.1 cargo run --example answer_stdin < offer.sdp

use std::io::Read;
use std::sync::Arc;

use smallwebrtc::{Peer, PeerConfig, PeerEvent, PeerState};

fn main() {
    let mut offer = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut offer) {
        eprintln!("cannot read the offer from stdin: {e}");
        std::process::exit(2);
    }
    let cfg = PeerConfig {
        bind_ip: std::env::var("SWRTC_BIND")
            .ok()
            .and_then(|s| s.parse().ok()),
        ..PeerConfig::default()
    };
    let peer = Arc::new(match Peer::new(cfg, None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot create the peer: {e}");
            std::process::exit(1);
        }
    });
    match peer.handle_offer(&offer) {
        Ok(answer) => println!("{answer}"),
        Err(e) => {
            eprintln!("offer rejected: {e}");
            std::process::exit(1);
        }
    }
    if let Err(e) = peer.connect() {
        eprintln!("connect failed: {e}");
        std::process::exit(1);
    }
    eprintln!("answered; listening on {:?}", peer.local_addrs());
    loop {
        match peer.poll_event(Some(std::time::Duration::from_secs(1))) {
            Some(PeerEvent::Message {
                data,
                binary: false,
            }) => {
                let text = String::from_utf8_lossy(&data);
                let m: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.into()));
                let reply = serde_json::json!({ "echo": m }).to_string();
                if let Err(e) = peer.send_message(reply.as_bytes(), false) {
                    eprintln!("echo not sent: {e}");
                }
            }
            Some(PeerEvent::State(s)) => {
                eprintln!("state: {s:?}");
                if s == PeerState::Closed {
                    return;
                }
            }
            Some(other) => eprintln!("event: {other:?}"),
            None => {}
        }
    }
}
