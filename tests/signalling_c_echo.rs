//! The C echo bot (examples/c/echo_bot.c), built with `-Wall -Wextra -Werror` against the
//! committed header, answers aiortc over HTTP through `swrtc_server_*`: app messages come
//! back as {"echo": m}, RTVI client-ready gets bot-ready, and the caller's tone returns.

mod common;
mod signalling_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::aiortc::AiortcPeer;
use common::c_build::compile_c_example;
use serde_json::json;
use signalling_support::post_json;

const T: Duration = Duration::from_secs(15);

#[test]
fn c_echo_bot_serves_aiortc_over_http() {
    let out_dir = std::env::temp_dir().join(format!("swrtc-c-echo-{}", std::process::id()));
    let exe = compile_c_example("echo_bot", &out_dir, &["-lpthread"]);

    let mut bot = Command::new(&exe)
        .args(["127.0.0.1:0", "30"])
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
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            eprintln!("[echo_bot] {l}");
        }
    });

    let mut client = AiortcPeer::spawn();
    let offer = client.offer(json!({"audio": true, "video": false, "tone_hz": 700}));
    let r = post_json(
        addr,
        "/api/offer",
        &json!({"sdp": offer, "type": "offer", "request_data": {"from": "c-test"}}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
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
    let _ = bot.kill();
    let _ = bot.wait();
}
