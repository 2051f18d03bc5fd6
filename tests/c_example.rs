//! Builds the C example against the committed header and the built shared library with
//! `-Wall -Wextra -Werror`, and runs it against aiortc: it answers an offer and echoes an
//! app message through the C callbacks.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::aiortc::AiortcPeer;
use common::c_build::compile_c_example;
use serde_json::json;

#[test]
fn c_example_answers_an_offer_and_echoes_a_message() {
    let out_dir = std::env::temp_dir().join(format!("swrtc-c-{}", std::process::id()));
    let exe = compile_c_example("answer_offer", &out_dir, &[]);

    let mut client = AiortcPeer::spawn();
    let offer = client.offer(json!({"audio": true, "video": true}));
    let offer_file = out_dir.join("offer.sdp");
    std::fs::File::create(&offer_file)
        .unwrap()
        .write_all(offer.as_bytes())
        .unwrap();
    let mut child = Command::new(&exe)
        .arg(&offer_file)
        .arg("2")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut answer = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line == "--END--" {
            break;
        }
        answer.push_str(&line);
        answer.push('\n');
    }
    assert!(answer.starts_with("v=0"), "answer: {answer}");
    client.answer(answer.trim_end());
    client.wait_channel_open(Duration::from_secs(15));
    client.send_text(r#"{"hello":"from aiortc"}"#);
    client.send_text(r#""second""#);
    let m = client.wait_message(Duration::from_secs(15), |m| m.contains("echo"));
    assert_eq!(m, r#"{"echo": {"hello":"from aiortc"}}"#);
    let m = client.wait_message(Duration::from_secs(15), |m| m.contains("echo"));
    assert_eq!(m, r#"{"echo": "second"}"#);
    // Freeing the peer sends peerLeft.
    client.wait_message(Duration::from_secs(15), |m| m.contains("peerLeft"));
    let status = child.wait().unwrap();
    assert!(status.success(), "the C example failed: {status}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
