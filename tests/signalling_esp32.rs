//! An ESP32 client as pipecat-esp32 (libpeer) builds its offer, reproduced with aiortc
//! plus SDP edits: fully gathered, no trickle, audio-only `UDP/TLS/RTP/SAVP` m-line with
//! Opus only and mid "audio", session-level ICE credentials and fingerprint,
//! `a=setup:passive`, an "rtvi-ai" data channel on SCTP stream 0, no pings. It connects to
//! the echo bot over HTTP and gets its messages, bot-ready and audio back; its answer is
//! under 4096 bytes, CRLF, lines under 256 bytes, with a Content-Length (never chunked).
//! Runs with ESP32 mode off (the SAVP offer is recognised) and on (host filter).

mod common;
mod signalling_support;

use std::time::Duration;

use common::aiortc::AiortcPeer;
use serde_json::{json, Value};
use signalling_support::request;
use smallwebrtc::signalling::{echo, Server, ServerConfig};

const T: Duration = Duration::from_secs(15);

/// Rewrites aiortc's audio + data channel offer the way libpeer writes one.
fn esp32_offer(sdp: &str) -> String {
    let lines: Vec<&str> = sdp.lines().map(|l| l.trim_end_matches('\r')).collect();
    let first_m = lines.iter().position(|l| l.starts_with("m=")).unwrap();
    let find = |prefix: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in the aiortc offer"))
            .to_string()
    };
    let (ufrag, pwd) = (find("a=ice-ufrag:"), find("a=ice-pwd:"));
    let fingerprint = find("a=fingerprint:sha-256");
    // aiortc's Opus payload type.
    let opus_pt = find("a=rtpmap:")
        .split_whitespace()
        .next()
        .and_then(|s| s.strip_prefix("a=rtpmap:"))
        .unwrap()
        .to_owned();
    let opus_pt = lines
        .iter()
        .find(|l| l.starts_with("a=rtpmap:") && l.contains("opus/48000"))
        .and_then(|l| l.strip_prefix("a=rtpmap:")?.split(' ').next())
        .map(str::to_owned)
        .unwrap_or(opus_pt);

    let mut out = Vec::new();
    for l in &lines[..first_m] {
        if l.starts_with("a=group:BUNDLE") {
            out.push("a=group:BUNDLE audio datachannel".to_owned());
        } else if !l.starts_with("a=fingerprint") && !l.starts_with("a=ice-") && !l.is_empty() {
            out.push(l.to_string());
        }
    }
    out.extend([ufrag, pwd, fingerprint, "a=setup:passive".to_owned()]);
    for l in &lines[first_m..] {
        let keep_pt = |rest: &str| rest.split([' ', ':']).next() == Some(opus_pt.as_str());
        if l.starts_with("m=audio ") {
            let port = l.split(' ').nth(1).unwrap();
            out.push(format!("m=audio {port} UDP/TLS/RTP/SAVP {opus_pt}"));
        } else if l.starts_with("a=ice-")
            || l.starts_with("a=fingerprint")
            || l.starts_with("a=setup")
            || l.is_empty()
        {
        } else if let Some(rest) = l
            .strip_prefix("a=rtpmap:")
            .or_else(|| l.strip_prefix("a=fmtp:"))
            .or_else(|| l.strip_prefix("a=rtcp-fb:"))
        {
            if keep_pt(rest) {
                out.push(l.to_string());
            }
        } else if l == &"a=mid:0" {
            out.push("a=mid:audio".into());
        } else if l == &"a=mid:1" {
            out.push("a=mid:datachannel".into());
        } else {
            out.push(l.to_string());
        }
    }
    out.join("\r\n") + "\r\n"
}

/// Maps the answer back onto what aiortc offered (its mids and profile).
fn for_aiortc(answer: &str) -> String {
    answer
        .replace("a=mid:audio\r\n", "a=mid:0\r\n")
        .replace("a=mid:datachannel\r\n", "a=mid:1\r\n")
        .replace("BUNDLE audio datachannel", "BUNDLE 0 1")
        .replace(" UDP/TLS/RTP/SAVP ", " UDP/TLS/RTP/SAVPF ")
}

fn esp32_connects_and_echoes(cfg: ServerConfig) {
    let server = Server::start(cfg, Some(echo::on_peer(true))).unwrap();
    let mut client = AiortcPeer::spawn();
    let offer = client.offer(json!({
        "audio": true, "video_line": false, "label": "rtvi-ai", "channel_id": 0,
        "pings": false, "track_status": false, "tone_hz": 500
    }));
    let offer = esp32_offer(&offer);
    assert!(offer.contains("m=audio 9 UDP/TLS/RTP/SAVP ") || offer.contains(" UDP/TLS/RTP/SAVP "));
    assert!(!offer.contains("m=video"));

    // The firmware posts {sdp, type} and reads at most 4096 bytes.
    let body = json!({"sdp": offer, "type": "offer"}).to_string();
    let r = request(server.local_addr(), "POST", "/api/offer", body.as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(!r.chunked, "the firmware restarts on a chunked reply");
    assert_eq!(
        r.header("Content-Length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        r.body.len()
    );
    assert!(r.body.len() < 4096, "answer body is {} bytes", r.body.len());
    let a: Value = r.json();
    let sdp = a["sdp"].as_str().unwrap();
    assert!(sdp.ends_with("\r\n"));
    assert!(!sdp.replace("\r\n", "").contains('\n'), "CRLF only");
    for l in sdp.split("\r\n") {
        assert!(l.len() < 256, "line of {} bytes: {l}", l.len());
    }
    assert_eq!(sdp.matches("a=fingerprint:").count(), 1);
    assert!(sdp.contains("a=fingerprint:sha-256 "));
    assert!(
        sdp.contains("a=setup:active"),
        "we are the DTLS client:\n{sdp}"
    );
    assert!(sdp.contains("a=mid:audio") && sdp.contains("127.0.0.1"));
    assert!(sdp.contains("m=audio 9 UDP/TLS/RTP/SAVP ") || sdp.contains(" UDP/TLS/RTP/SAVP "));
    eprintln!(
        "ESP32 answer: {} bytes of JSON, {} of SDP",
        r.body.len(),
        sdp.len()
    );

    client.answer(&for_aiortc(sdp));
    assert_eq!(client.wait_channel_open(T), "rtvi-ai");
    client.send_text(
        r#"{"label":"rtvi-ai","type":"client-ready","id":"e5p32","data":{"version":"1.0.0"}}"#,
    );
    let ready: Value =
        serde_json::from_str(&client.wait_message(T, |m| m.contains("bot-ready"))).unwrap();
    assert_eq!(ready["id"], "e5p32");
    client.send_text(r#"{"label":"rtvi-ai","type":"send-text","data":{"content":"hi"}}"#);
    client.wait_message(T, |m| m.contains(r#""echo":{"data":{"content":"hi"}"#));
    client.wait_audio(T, |s| {
        s["rms_dbfs"].as_f64().unwrap_or(-120.0) > -45.0
            && s["freq_hz"]
                .as_f64()
                .is_some_and(|f| (f - 500.0).abs() < 50.0)
    });
    client.close();
}

#[test]
fn esp32_offer_works_without_esp32_mode() {
    esp32_connects_and_echoes(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        peer: echo::echo_peer_config(),
        ..ServerConfig::default()
    });
}

#[test]
fn esp32_offer_works_in_esp32_mode_with_a_host_filter() {
    esp32_connects_and_echoes(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        peer: echo::echo_peer_config(),
        esp32: true,
        esp32_host: Some("127.0.0.1".parse().unwrap()),
        ..ServerConfig::default()
    });
}
