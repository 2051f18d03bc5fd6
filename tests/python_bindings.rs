//! The Python package over the C ABI, against aiortc over 127.0.0.1: the Python echo bot
//! (`python/examples/echo_bot.py`: server, callbacks, audio and video frames, messages) and
//! a Pipecat echo pipeline on our Pipecat transport (`python/examples/pipecat_echo_bot.py`)
//! each hear the caller's tone come back at its frequency, follow a change of tone, echo
//! app messages as `{"echo": m}`, answer RTVI client-ready with bot-ready and send the
//! camera back. `python/tests/test_peer.py` drives a peer with our own signalling and the
//! pull API (read/write audio, poll events, video, stats) against aiortc in the same
//! process. Needs `.ci/setup-pipecat.sh` (the `.venv-pyx` venv).

mod common;
mod python_support;
mod signalling_support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use python_support::{python, repo_root, shared_library, PyServer};
use serde_json::{json, Value};
use signalling_support::{patch_json, post_json};

/// Deadlines only end failures: generous, as a busy 2-core machine runs all this slowly.
const T: Duration = Duration::from_secs(40);

/// One test at a time: each runs Python servers, aiortc and codecs at real time, and three
/// at once on a busy 2-core machine starve each other (echoed video took over 20 s).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Offers over HTTP as Pipecat's client does; returns once the data channel is open.
fn connect(client: &mut AiortcPeer, addr: SocketAddr, tone_hz: f64) {
    let offer = client.offer(json!({"audio": true, "video": true, "tone_hz": tone_hz}));
    let r = post_json(addr, "/api/offer", &json!({"sdp": offer, "type": "offer"}));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let a = r.json();
    client.answer(a["sdp"].as_str().expect("an SDP answer"));
    let p = patch_json(
        addr,
        "/api/offer",
        &json!({"pc_id": a["pc_id"], "candidates": [
            {"candidate": "", "sdp_mid": "0", "sdp_mline_index": 0}]}),
    );
    assert_eq!(p.status, 200);
    client.wait_channel_open(T);
}

fn wait_tone(client: &mut AiortcPeer, hz: f64) {
    client.wait_audio(T, |s| {
        s["rms_dbfs"].as_f64().unwrap_or(-120.0) > -45.0
            && s["freq_hz"]
                .as_f64()
                .is_some_and(|f| (f - hz).abs() < hz * 0.1)
    });
}

fn assert_echoes(client: &mut AiortcPeer, n: u32) {
    let sent = json!({"n": n, "hello": "python"});
    client.send_text(&sent.to_string());
    let want = json!({"echo": sent});
    client.wait_message(T, |m| {
        serde_json::from_str::<Value>(m).ok().as_ref() == Some(&want)
    });
}

fn assert_bot_ready(client: &mut AiortcPeer) {
    client.send_text(r#"{"label":"rtvi-ai","type":"client-ready","id":"c0ffee02","data":{"version":"1.0.0","about":{"library":"test"}}}"#);
    let ready = client.wait_message(T, |m| m.contains("bot-ready"));
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["label"], "rtvi-ai");
    assert_eq!(ready["id"], "c0ffee02");
}

fn wait_video(client: &mut AiortcPeer) -> Value {
    let end = Instant::now() + T;
    loop {
        let v = client.video_stats();
        if v["frames"].as_u64().unwrap_or(0) >= 10 {
            return v;
        }
        assert!(Instant::now() < end, "no echoed video: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The full round: tone, new tone, messages, RTVI, video (when `video`), then the client
/// leaves.
fn echo_round(server: &mut PyServer, video: bool) {
    let mut client = AiortcPeer::spawn();
    let t0 = Instant::now();
    connect(&mut client, server.addr, 440.0);
    wait_tone(&mut client, 440.0);
    let heard = t0.elapsed();
    client.set_tone(660.0, -20.0);
    wait_tone(&mut client, 660.0);
    for n in 0..3 {
        assert_echoes(&mut client, n);
    }
    assert_bot_ready(&mut client);
    if video {
        let v = wait_video(&mut client);
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(640), Some(480))
        );
    }
    eprintln!(
        "POST → echoed tone heard {:.0} ms",
        heard.as_secs_f64() * 1e3
    );
    client.close();
}

#[test]
fn python_echo_bot_echoes_tone_messages_and_video_to_aiortc() {
    let _serial = serial();
    let mut server = PyServer::start("python/examples/echo_bot.py", &["--addr", "127.0.0.1:0"]);
    echo_round(&mut server, true);
    // A second client after the first left: peers are freed and the server goes on.
    echo_round(&mut server, false);
    assert!(
        server.stop(),
        "the echo bot did not exit cleanly:\n{}",
        server.log()
    );
    assert!(!server.log().contains("Traceback"), "{}", server.log());
}

/// Bot speech (a long tone queued in the pipeline) stops soon after an interruption: the
/// output transport drops what Pipecat and the library still hold.
fn interruption_round(server: &mut PyServer) {
    let mut client = AiortcPeer::spawn();
    connect(&mut client, server.addr, 0.0); // the client sends digital silence
    client.send_text(r#"{"say_hz": 1000, "secs": 60}"#);
    wait_tone(&mut client, 1000.0);
    client.send_text(r#"{"interrupt": true}"#);
    let t0 = Instant::now();
    // The client's level is over its last 2 s: silence within 25 s of a 60 s tone.
    client.wait_audio(Duration::from_secs(25), |s| {
        s["rms_dbfs"].as_f64().unwrap_or(0.0) < -60.0
    });
    eprintln!(
        "interrupt → 2 s of silence heard after {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    client.close();
}

#[test]
fn pipecat_pipeline_on_our_transport_echoes_to_aiortc() {
    let _serial = serial();
    let mut server = PyServer::start(
        "python/examples/pipecat_echo_bot.py",
        &["--addr", "127.0.0.1:0"],
    );
    echo_round(&mut server, true);
    interruption_round(&mut server);
    echo_round(&mut server, false);
    assert!(
        server.stop(),
        "the Pipecat bot did not exit cleanly:\n{}",
        server.log()
    );
    assert!(!server.log().contains("Traceback"), "{}", server.log());
}

#[test]
fn python_pull_api_against_aiortc_in_process() {
    let _serial = serial();
    let lib = shared_library();
    let out = Command::new(python())
        .arg(repo_root().join("python/tests/test_peer.py"))
        .env("SMALLWEBRTC_LIB", &lib)
        .env("PYTHONPATH", repo_root().join("python"))
        .current_dir(repo_root())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python/tests/test_peer.py failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("test_peer: all passed"),
        "{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
}
