//! The C echo bot (examples/c/echo_bot.c), built with `-Wall -Wextra -Werror` against the
//! committed header, answers aiortc over HTTP through `swrtc_server_*`: app messages come
//! back as {"echo": m}, RTVI client-ready gets bot-ready, and the caller's tone returns.
//! Its `on_access` callback wants a bearer token (401 with `WWW-Authenticate: Bearer`
//! without one, 403 with a wrong one), and `swrtc_peer_protocol` tells a WHIP peer from
//! a Pipecat one.

mod common;
mod signalling_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::aiortc::AiortcPeer;
use common::c_build::compile_c_example;
use serde_json::json;
use signalling_support::request_with;

const T: Duration = Duration::from_secs(15);

#[test]
fn c_echo_bot_serves_aiortc_over_http() {
    let out_dir = std::env::temp_dir().join(format!("swrtc-c-echo-{}", std::process::id()));
    let exe = compile_c_example("echo_bot", &out_dir, &["-lpthread"]);

    let mut bot = Command::new(&exe)
        .args(["127.0.0.1:0", "30"])
        .env("SWRTC_TOKEN", "c-token")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(bot.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("listening on http://")
        .expect(&first)
        .trim_end_matches('/');
    let addr = url.parse().unwrap();
    let (tx, said) = crossbeam_channel::unbounded::<String>();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            eprintln!("[echo_bot] {l}");
            let _ = tx.send(l);
        }
    });
    let json_type = ("Content-Type", "application/json");
    let auth = ("Authorization", "Bearer c-token");

    let mut client = AiortcPeer::spawn();
    let offer = client.offer(json!({"audio": true, "video": false, "tone_hz": 700}));
    let body =
        json!({"sdp": offer, "type": "offer", "request_data": {"from": "c-test"}}).to_string();
    let r = request_with(addr, "POST", "/api/offer", &[json_type], body.as_bytes());
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    let wrong = ("Authorization", "Bearer nope");
    let r = request_with(
        addr,
        "POST",
        "/api/offer",
        &[json_type, wrong],
        body.as_bytes(),
    );
    assert_eq!(r.status, 403);
    let r = request_with(
        addr,
        "POST",
        "/api/offer",
        &[json_type, auth],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let next_peer = || loop {
        let l = said.recv_timeout(T).expect("the bot reports each new peer");
        if l.starts_with("new peer") {
            break l;
        }
    };
    let line = next_peer();
    assert!(line.ends_with("protocol pipecat"), "{line}");
    client.answer(r.json()["sdp"].as_str().unwrap());
    client.wait_channel_open(T);
    client.send_text(r#"{"hello":"c"}"#);
    client.wait_message(T, |m| m == r#"{"echo":{"hello":"c"}}"#);
    client.send_text(r#"{"label":"rtvi-ai","type":"client-ready","id":"cc01","data":{}}"#);
    client.wait_message(T, |m| m.contains("bot-ready") && m.contains("cc01"));
    client.wait_audio(T, |s| {
        s["rms_dbfs"].as_f64().unwrap_or(-120.0) > -45.0
            && s["freq_hz"]
                .as_f64()
                .is_some_and(|f| (f - 700.0).abs() < 70.0)
    });
    client.close();

    // A WHIP publisher reaches the C app as one.
    let mut publisher = AiortcPeer::spawn();
    let offer = publisher.offer(json!({"direction": "sendonly", "datachannel": false}));
    let sdp_type = ("Content-Type", "application/sdp");
    let r = request_with(addr, "POST", "/whip", &[sdp_type], offer.as_bytes());
    assert_eq!(r.status, 401);
    let r = request_with(addr, "POST", "/whip", &[sdp_type, auth], offer.as_bytes());
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let line = next_peer();
    assert!(line.ends_with("protocol whip"), "{line}");
    publisher.close();
    let _ = bot.kill();
    let _ = bot.wait();
}
