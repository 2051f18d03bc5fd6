#![allow(dead_code)]
//! Runs the example bots (C, C++, the game loop) as child processes and drives one aiortc
//! session against each, so the plain, installed, sanitized and valgrind builds share one
//! scenario. A bot prints "listening on http://IP:PORT/" first, then one line per event.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde_json::{json, Value};

use crate::common::aiortc::AiortcPeer;
use crate::signalling_support as http;

/// A running bot: its HTTP address, its stdout lines and its whole stderr.
pub struct Bot {
    child: Child,
    pub addr: SocketAddr,
    lines: Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
    name: String,
}

impl Bot {
    /// Spawns `cmd` (its stdout and stderr are taken) and waits up to `startup` for the
    /// "listening on" line.
    pub fn spawn(name: &str, mut cmd: Command, startup: Duration) -> Bot {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, lines) = crossbeam_channel::unbounded();
        let stdout = child.stdout.take().unwrap();
        let tag = name.to_string();
        thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {l}");
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = Some(thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }));
        let first = match lines.recv_timeout(startup) {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                panic!("{name} did not start within {startup:?}: {e}");
            }
        };
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{name} printed {first:?}"))
            .trim_end_matches('/')
            .parse()
            .unwrap();
        Bot {
            child,
            addr,
            lines,
            stderr,
            name: name.to_string(),
        }
    }

    /// Waits for a stdout line containing `needle`.
    pub fn wait_line(&self, deadline: Duration, needle: &str) -> String {
        let until = Instant::now() + deadline;
        loop {
            match self.lines.recv_deadline(until) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!("{}: no line with {needle:?} within {deadline:?}", self.name),
            }
        }
    }

    /// Waits up to `deadline` for the bot to exit by itself; returns its exit status and
    /// everything it wrote to stderr.
    pub fn wait_exit(mut self, deadline: Duration) -> (ExitStatus, String) {
        let until = Instant::now() + deadline;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < until,
                "{} did not exit within {deadline:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(20));
        };
        let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
        (status, stderr)
    }

    /// Asks the bot to stop (SIGTERM) and waits up to `deadline` for it to exit; returns
    /// its exit status and everything it wrote to stderr.
    pub fn stop(mut self, deadline: Duration) -> (ExitStatus, String) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let until = Instant::now() + deadline;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not exit within {deadline:?} of SIGTERM", self.name);
            }
            thread::sleep(Duration::from_millis(20));
        };
        let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts `offer` to the bot's /api/offer and hands the answer to `client`.
pub fn connect(client: &mut AiortcPeer, bot: &Bot, offer_opts: Value, deadline: Duration) {
    let offer = client.offer(offer_opts);
    let r = http::post_json(
        bot.addr,
        "/api/offer",
        &json!({"sdp": offer, "type": "offer"}),
    );
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, 200, "{body}");
    client.answer(
        r.json()["sdp"]
            .as_str()
            .unwrap_or_else(|| panic!("no sdp in {body}")),
    );
    client.wait_channel_open(deadline);
}

/// The caller's tone comes back: loud enough and at its frequency.
pub fn wait_tone_back(client: &mut AiortcPeer, hz: f64, deadline: Duration) {
    client.wait_audio(deadline, |s| {
        s["rms_dbfs"].as_f64().unwrap_or(-120.0) > -45.0
            && s["freq_hz"]
                .as_f64()
                .is_some_and(|f| (f - hz).abs() < hz / 10.0)
    });
}

/// One echo-bot session: messages come back as {"echo": m} and a 700 Hz tone returns.
/// `deadline` scales the waits (slow under valgrind).
pub fn echo_session(bot: &Bot, deadline: Duration) {
    let mut client = AiortcPeer::spawn();
    connect(
        &mut client,
        bot,
        json!({"audio": true, "video": false, "tone_hz": 700}),
        deadline,
    );
    client.send_text(r#"{"hello":"bot"}"#);
    client.wait_message(deadline, |m| m == r#"{"echo":{"hello":"bot"}}"#);
    client.send_text("plain");
    client.wait_message(deadline, |m| m == r#"{"echo":"plain"}"#);
    wait_tone_back(&mut client, 700.0, deadline);
    client.close();
}

/// Sanitizer or valgrind reports in a bot's stderr, if any.
pub fn assert_clean(name: &str, status: ExitStatus, stderr: &str) {
    for bad in [
        "ERROR: AddressSanitizer",
        "ERROR: LeakSanitizer",
        "runtime error:",
        "SUMMARY: UndefinedBehaviorSanitizer",
    ] {
        assert!(!stderr.contains(bad), "{name}: {bad}\n{stderr}");
    }
    assert!(status.success(), "{name} exited with {status}\n{stderr}");
}

/// One game-loop session: messages answered, the tone echoed, and camera frames read by
/// the loop's non-blocking `swrtc_peer_read_video` (its "stats" reply counts them).
pub fn game_loop_session(bot: &Bot, deadline: Duration) {
    let mut client = AiortcPeer::spawn();
    let opts = json!({"audio": true, "video": true, "tone_hz": 500,
                      "video_pattern": "swrtc", "video_size": [320, 240], "video_fps": 15});
    connect(&mut client, bot, opts, deadline);
    client.send_text(r#"{"move":"left"}"#);
    client.wait_message(deadline, |m| m == r#"{"echo":{"move":"left"}}"#);
    wait_tone_back(&mut client, 500.0, deadline);
    let until = Instant::now() + deadline;
    loop {
        client.send_text("stats");
        let m = client.wait_message(deadline, |m| m.contains("\"ticks\""));
        let v: Value = serde_json::from_str(&m).unwrap_or_else(|e| panic!("{e}: {m}"));
        let count = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {m}"));
        // The tone came back, so the loop has read many 20 ms frames by now.
        assert!(count("audio_frames") > 10, "{m}");
        assert!(count("ticks") > 0, "{m}");
        if count("video_frames") > 0 {
            break;
        }
        assert!(Instant::now() < until, "the loop read no camera frame: {m}");
        thread::sleep(Duration::from_millis(200));
    }
    client.close();
}

/// examples/c/answer_offer.c's session: it prints its answer to aiortc's offer (read from a
/// file) and "--END--", echoes two app messages, then frees the peer (peerLeft) and exits.
/// Returns its exit status and stderr.
pub fn answer_offer_session(
    mut cmd: Command,
    work_dir: &Path,
    deadline: Duration,
) -> (ExitStatus, String) {
    let mut client = AiortcPeer::spawn();
    let offer = client.offer(json!({"audio": true, "video": true}));
    let offer_file = work_dir.join("offer.sdp");
    std::fs::create_dir_all(work_dir).unwrap();
    std::fs::write(&offer_file, offer.as_bytes()).unwrap();
    let mut child = cmd
        .arg(&offer_file)
        .arg("2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
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
    client.wait_channel_open(deadline);
    client.send_text(r#"{"hello":"from aiortc"}"#);
    client.send_text(r#""second""#);
    let m = client.wait_message(deadline, |m| m.contains("echo"));
    assert_eq!(m, r#"{"echo": {"hello":"from aiortc"}}"#);
    let m = client.wait_message(deadline, |m| m.contains("echo"));
    assert_eq!(m, r#"{"echo": "second"}"#);
    // Freeing the peer sends peerLeft.
    client.wait_message(deadline, |m| m.contains("peerLeft"));
    let status = child.wait().unwrap();
    (status, stderr.join().unwrap_or_default())
}
