//! The echo bot behind the real HTTP server, driven by aiortc over 127.0.0.1: the offer
//! goes over HTTP, app messages and RTVI client-ready are echoed, the caller's tone comes
//! back, and both renegotiation (same pc_id) and restart_pc (new pc_id, old peer closed)
//! keep messages and audio flowing. Prints POST → answer / channel open / first echoed
//! audio for the report.

mod common;
mod signalling_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use serde_json::{json, Value};
use signalling_support::{patch_json, post_json, HttpResponse};
use smallwebrtc::signalling::{echo, Server, ServerConfig};

const T: Duration = Duration::from_secs(15);

fn echo_server() -> Server {
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        peer: echo::echo_peer_config(),
        ..ServerConfig::default()
    };
    Server::start(cfg, Some(echo::on_peer(true))).expect("server starts")
}

fn post_offer(addr: SocketAddr, sdp: &str, pc_id: Option<&str>, restart: bool) -> HttpResponse {
    let r = post_json(
        addr,
        "/api/offer",
        &json!({"sdp": sdp, "type": "offer", "pc_id": pc_id, "restart_pc": restart,
                "request_data": {"test": "aiortc"}}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(!r.chunked, "never chunked");
    let len: usize = r
        .header("Content-Length")
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(len, r.body.len());
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    r
}

fn assert_echoes(client: &mut AiortcPeer, n: u32) {
    let text = json!({"n": n, "hello": "smallwebrtc"}).to_string();
    client.send_text(&text);
    let want = json!({"echo": {"n": n, "hello": "smallwebrtc"}});
    client.wait_message(T, |m| {
        serde_json::from_str::<Value>(m).ok().as_ref() == Some(&want)
    });
}

/// Waits until the client hears the echo of its tone at `hz`; returns when.
fn wait_tone(client: &mut AiortcPeer, hz: f64) -> Instant {
    client.wait_audio(T, |s| {
        s["rms_dbfs"].as_f64().unwrap_or(-120.0) > -45.0
            && s["freq_hz"]
                .as_f64()
                .is_some_and(|f| (f - hz).abs() < hz * 0.1)
    });
    Instant::now()
}

#[test]
fn echo_over_http_survives_renegotiation_and_restart() {
    let server = echo_server();
    let addr = server.local_addr();
    let mut client = AiortcPeer::spawn();

    let offer = client.offer(json!({"audio": true, "video": true, "tone_hz": 440}));
    let t0 = Instant::now();
    let r = post_offer(addr, &offer, None, false);
    let answered = t0.elapsed();
    let a = r.json();
    assert_eq!(a["type"], "answer");
    let pc1 = a["pc_id"].as_str().unwrap().to_owned();
    assert!(a["sdp"].as_str().unwrap().contains("127.0.0.1"));
    client.answer(a["sdp"].as_str().unwrap());
    // aiortc gathers fully; trickle only the end-of-candidates.
    let p = patch_json(
        addr,
        "/api/offer",
        &json!({"pc_id": pc1, "candidates": [
        {"candidate": "", "sdp_mid": "0", "sdp_mline_index": 0}]}),
    );
    assert_eq!((p.status, p.json()), (200, json!({"status": "success"})));
    client.wait_channel_open(T);
    let opened = t0.elapsed();
    let first_audio = wait_tone(&mut client, 440.0).duration_since(t0);
    eprintln!(
        "aiortc: POST → answer {:.1} ms, → channel open {:.1} ms, → echoed tone heard {:.1} ms",
        answered.as_secs_f64() * 1e3,
        opened.as_secs_f64() * 1e3,
        first_audio.as_secs_f64() * 1e3
    );
    assert_echoes(&mut client, 1);

    // RTVI: client-ready gets bot-ready with its id.
    client.send_text(r#"{"label":"rtvi-ai","type":"client-ready","id":"c0ffee01","data":{"version":"1.0.0","about":{"library":"test"}}}"#);
    let ready = client.wait_message(T, |m| m.contains("bot-ready"));
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["label"], "rtvi-ai");
    assert_eq!(ready["id"], "c0ffee01");
    assert!(ready["data"]["version"].as_str().unwrap().starts_with("1."));

    // Renegotiation: same connection, same pc_id; a new tone proves fresh audio.
    let offer2 = client.renegotiate();
    let r = post_offer(addr, &offer2, Some(&pc1), false);
    assert_eq!(r.json()["pc_id"], pc1.as_str());
    client.answer(r.json()["sdp"].as_str().unwrap());
    client.set_tone(660.0, -20.0);
    wait_tone(&mut client, 660.0);
    assert_echoes(&mut client, 2);
    assert_eq!(server.registry().pc_ids(), vec![pc1.clone()]);

    // restart_pc: a new connection and pc_id; the old peer closes and is forgotten.
    let old = server.registry().peer(&pc1).expect("pc1 is live");
    let offer3 = client.offer(json!({"audio": true, "video": true, "tone_hz": 880}));
    let r = post_offer(addr, &offer3, Some(&pc1), true);
    let pc2 = r.json()["pc_id"].as_str().unwrap().to_owned();
    assert_ne!(pc1, pc2);
    client.answer(r.json()["sdp"].as_str().unwrap());
    client.wait_channel_open(T);
    wait_tone(&mut client, 880.0);
    assert_echoes(&mut client, 3);
    let end = Instant::now() + T;
    while old.state() != smallwebrtc::PeerState::Closed {
        assert!(Instant::now() < end, "the restarted peer never closed");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(old);
    assert_eq!(server.registry().pc_ids(), vec![pc2.clone()]);

    // Renegotiating the forgotten pc_id with restart is refused by nobody: it is a new
    // connection; a PATCH for it is a 404.
    let p = patch_json(addr, "/api/offer", &json!({"pc_id": pc1, "candidates": []}));
    assert_eq!(p.status, 404);
    client.close();
}

#[test]
fn several_clients_at_once_each_get_their_own_echo() {
    let server = echo_server();
    let addr = server.local_addr();
    let mut clients: Vec<AiortcPeer> = (0..3).map(|_| AiortcPeer::spawn()).collect();
    let mut ids = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let offer = c.offer(json!({"audio": true, "video": false, "tone_hz": 300 + 200 * i}));
        let r = post_offer(addr, &offer, None, false);
        ids.push(r.json()["pc_id"].as_str().unwrap().to_owned());
        c.answer(r.json()["sdp"].as_str().unwrap());
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.wait_channel_open(T);
        assert_echoes(c, i as u32);
        wait_tone(c, 300.0 + 200.0 * i as f64);
    }
    let mut live = server.registry().pc_ids();
    live.sort();
    ids.sort();
    assert_eq!(live, ids);
    for c in &mut clients {
        c.close();
    }
}
