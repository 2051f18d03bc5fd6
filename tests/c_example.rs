//! Builds the C example against the committed header and the built shared library with
//! `-Wall -Wextra -Werror`, and runs it against aiortc: it answers an offer and echoes an
//! app message through the C callbacks.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::aiortc::AiortcPeer;
use serde_json::json;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the cdylib of this build profile.
fn lib_dir() -> PathBuf {
    // target/<profile>/deps/<test binary> → target/<profile>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn build_shared_library() {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--lib", "--quiet"])
        .current_dir(root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --lib failed");
}

#[test]
fn c_example_answers_an_offer_and_echoes_a_message() {
    build_shared_library();
    let out_dir = std::env::temp_dir().join(format!("swrtc-c-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join("answer_offer");
    let lib = lib_dir();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-D_POSIX_C_SOURCE=200809L",
        ])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("examples/c/answer_offer.c"))
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lsmallwebrtc")
        .status()
        .expect("a C compiler");
    assert!(status.success(), "the C example does not compile");

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
