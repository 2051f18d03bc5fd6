//! Drives the independent aiortc peer (`tests/peers/aiortc_peer.py`) over its
//! stdin/stdout JSON-lines protocol (documented at the top of that script).
//!
//! The peer behaves like Pipecat's JS SmallWebRTC client: audio sendrecv
//! (mid 0), video sendrecv (mid 1), optional screen video sendonly (mid 2),
//! a client-created data channel ("chat"), a trackStatus signalling message
//! and `ping: <ms>` every second once the channel opens. It gathers only
//! 127.0.0.1 host candidates and uses no STUN server (unless an offer names some).
//!
//! Needs `<repo>/.venv` (run `.ci/setup-python.sh`), or a Python with aiortc
//! in `SWRTC_PYTHON`. Set `SWRTC_AIORTC_LOG=1` to copy the peer's stderr to the
//! test's stderr, and `AIORTC_PEER_DEBUG=1` to make the peer log verbosely.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::{json, Value};

/// Deadline used by the convenience helpers (`offer`, `answer`, ...).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(20);
const STDERR_TAIL_LINES: usize = 200;
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub struct AiortcPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    /// Events received but not yet returned by a `wait_event`.
    backlog: VecDeque<Value>,
    /// Every event received so far, in order.
    seen: Vec<Value>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Disconnects when the stderr reader thread ends.
    stderr_done: Receiver<()>,
    /// Number of the current peer connection (the "pc" of the last offer).
    pc: Value,
}

/// Repository root (the crate's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python interpreter to run the peer with: `SWRTC_PYTHON`, else the
/// repository's `.venv`.
pub fn python_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SWRTC_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo_root().join(".venv").join("bin").join("python");
    if !venv.exists() {
        panic!(
            "aiortc peer: no Python venv at {} — run `.ci/setup-python.sh` from the \
             repository root first (or set SWRTC_PYTHON to a Python that has aiortc)",
            venv.display()
        );
    }
    venv
}

/// Shortens long strings (SDPs) for diagnostics.
fn abbreviate(v: &Value) -> String {
    let mut v = v.clone();
    if let Value::Object(map) = &mut v {
        for (_, field) in map.iter_mut() {
            if let Value::String(s) = field {
                if s.len() > 160 {
                    let mut cut = 160;
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    *s = format!("{}…({} bytes)", &s[..cut], s.len());
                }
            }
        }
    }
    v.to_string()
}

impl AiortcPeer {
    /// Starts `python tests/peers/aiortc_peer.py` in the repository root.
    pub fn spawn() -> AiortcPeer {
        Self::spawn_with(&python_path(), &repo_root(), None)
    }

    /// Starts the peer inside network namespace `netns` (`ip netns exec`, which execs
    /// Python in place, so [`AiortcPeer::pid`] is still Python's).
    pub fn spawn_in_netns(netns: &str) -> AiortcPeer {
        Self::spawn_with(&python_path(), &repo_root(), Some(netns))
    }

    fn spawn_with(python: &Path, root: &Path, netns: Option<&str>) -> AiortcPeer {
        let script = root.join("tests").join("peers").join("aiortc_peer.py");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(python);
                c
            }
            None => Command::new(python),
        };
        let mut child = cmd
            .arg(&script)
            .current_dir(root)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "aiortc peer: cannot start {} {}: {e} (run `.ci/setup-python.sh`?)",
                    python.display(),
                    script.display()
                )
            });

        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        let (tx, events) = crossbeam_channel::unbounded::<Value>();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        thread::Builder::new()
            .name("aiortc-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.trim().is_empty() {
                        continue;
                    }
                    let value = serde_json::from_str::<Value>(&line).unwrap_or_else(
                        |e| json!({"event": "unparsed", "line": line, "error": e.to_string()}),
                    );
                    if tx.send(value).is_err() {
                        break;
                    }
                }
                // Dropping tx tells waiters that the peer's stdout closed.
            })
            .expect("spawn stdout reader");

        let (done_tx, stderr_done) = crossbeam_channel::bounded::<()>(0);
        let tail_err = tail.clone();
        let echo = std::env::var_os("SWRTC_AIORTC_LOG").is_some();
        thread::Builder::new()
            .name("aiortc-stderr".into())
            .spawn(move || {
                let _done = done_tx;
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if echo {
                        eprintln!("[aiortc] {line}");
                    }
                    let mut t = tail_err.lock().unwrap_or_else(|p| p.into_inner());
                    if t.len() == STDERR_TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
            .expect("spawn stderr reader");

        AiortcPeer {
            child,
            stdin,
            events,
            backlog: VecDeque::new(),
            seen: Vec::new(),
            stderr_tail: tail,
            stderr_done,
            pc: Value::Null,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one command line to the peer.
    pub fn send(&mut self, cmd: Value) {
        let line = format!("{cmd}\n");
        let result = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(line.as_bytes()).and_then(|_| stdin.flush()),
            None => Err(std::io::Error::other("stdin already closed")),
        };
        if let Err(e) = result {
            self.fail(&format!(
                "cannot send {} to the aiortc peer: {e}",
                abbreviate(&cmd)
            ));
        }
    }

    /// Moves every event already delivered by the reader into the backlog.
    fn pump(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            self.seen.push(ev.clone());
            self.backlog.push_back(ev);
        }
    }

    /// Every event received so far (including those already returned by
    /// `wait_event`), in order.
    pub fn events_so_far(&mut self) -> Vec<Value> {
        self.pump();
        self.seen.clone()
    }

    /// Returns and removes the first pending event matching `pred`, if one has
    /// already arrived; never blocks.
    pub fn try_event(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.pump();
        let i = self.backlog.iter().position(pred)?;
        self.backlog.remove(i)
    }

    /// Waits up to `deadline` (a duration from now) for an event matching
    /// `pred`, returns and removes it. Events that do not match stay pending
    /// for later waits. Panics with the events seen so far and the peer's
    /// stderr tail on timeout or if the peer exits.
    pub fn wait_event(&mut self, deadline: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(ev) = self.try_event(&pred) {
            return ev;
        }
        let until = Instant::now() + deadline;
        loop {
            match self.events.recv_deadline(until) {
                Ok(ev) => {
                    self.seen.push(ev.clone());
                    if pred(&ev) {
                        return ev;
                    }
                    self.backlog.push_back(ev);
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no matching aiortc event within {deadline:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail("the aiortc peer closed its stdout (exited?) before a matching event")
                }
            }
        }
    }

    /// Waits for an event named `name`, or panics early on an error event
    /// caused by command `cmd`.
    fn wait_reply(&mut self, cmd: &str, name: &str, deadline: Duration) -> Value {
        let ev = self.wait_event(deadline, |e| {
            e["event"] == name || (e["event"] == "error" && e["cmd"] == cmd)
        });
        if ev["event"] == "error" {
            self.fail(&format!("aiortc command {cmd:?} failed: {}", ev["message"]));
        }
        ev
    }

    /// Starts a new peer connection and returns its fully gathered offer SDP.
    /// `opts` is an object of offer options (`audio`, `video`, `screen`,
    /// `label`, `pings`, `track_status`, `tone_hz`, `tone_dbfs`); `json!({})`
    /// gives the defaults (audio tone + video, no screen, "chat", pings on).
    pub fn offer(&mut self, opts: Value) -> String {
        let mut cmd = match opts {
            Value::Object(map) => Value::Object(map),
            Value::Null => json!({}),
            other => panic!("offer options must be a JSON object, got {other}"),
        };
        cmd["cmd"] = json!("offer");
        self.send(cmd);
        let ev = self.wait_reply("offer", "offer", DEFAULT_DEADLINE);
        self.pc = ev["pc"].clone();
        ev["sdp"]
            .as_str()
            .expect("offer event has an sdp string")
            .to_owned()
    }

    /// A new offer on the same connection (renegotiation).
    pub fn renegotiate(&mut self) -> String {
        self.send(json!({"cmd": "renegotiate"}));
        let ev = self.wait_reply("renegotiate", "offer", DEFAULT_DEADLINE);
        ev["sdp"]
            .as_str()
            .expect("offer event has an sdp string")
            .to_owned()
    }

    /// Applies the server's answer; panics if aiortc rejects it. Returns how many remote
    /// candidates aiortc took from it for the data channel's ICE transport.
    pub fn answer(&mut self, sdp: &str) -> u64 {
        self.send(json!({"cmd": "answer", "sdp": sdp}));
        let ev = self.wait_reply("answer", "answered", DEFAULT_DEADLINE);
        ev["remote_candidates"].as_u64().unwrap_or(0)
    }

    /// Sends a text message on the data channel; panics if it is not open.
    pub fn send_text(&mut self, text: &str) {
        self.send(json!({"cmd": "send", "text": text}));
        self.wait_reply("send", "sent", DEFAULT_DEADLINE);
    }

    /// Changes the outgoing tone (0 Hz = silence).
    pub fn set_tone(&mut self, hz: f64, dbfs: f64) {
        self.send(json!({"cmd": "set_tone", "hz": hz, "dbfs": dbfs}));
        self.wait_reply("set_tone", "tone_set", DEFAULT_DEADLINE);
    }

    /// `{"frames","sample_rate","rms_dbfs","freq_hz","window_s"}` of the
    /// received audio (rms/freq over the last 2 s; null before any audio).
    pub fn audio_stats(&mut self) -> Value {
        self.send(json!({"cmd": "audio_stats"}));
        self.wait_reply("audio_stats", "audio_stats", DEFAULT_DEADLINE)
    }

    /// `{"frames","width","height"}` of the received video.
    pub fn video_stats(&mut self) -> Value {
        self.send(json!({"cmd": "video_stats"}));
        self.wait_reply("video_stats", "video_stats", DEFAULT_DEADLINE)
    }

    /// `{"camera":N,"screen":M}`: frames each outgoing video track has handed
    /// to its sender (null for an absent track).
    pub fn video_sent(&mut self) -> Value {
        self.send(json!({"cmd": "video_sent"}));
        self.wait_reply("video_sent", "video_sent", DEFAULT_DEADLINE)
    }

    /// Stops (`true`) or resumes the "swrtc"/solid-colour video tracks;
    /// returns `{"paused","camera","screen"}` with the frame counts, final
    /// while paused.
    pub fn video_pause(&mut self, paused: bool) -> Value {
        self.send(json!({"cmd": "video_pause", "paused": paused}));
        self.wait_reply("video_pause", "video_paused", DEFAULT_DEADLINE)
    }

    /// `{"rtts_ms":[...],"bursts_sent":N,"onsets":M,"unmatched":K}` of the "bursts" offer
    /// option (see tests/peers/aiortc_peer.py); `reset` clears the list after answering.
    pub fn latency(&mut self, reset: bool) -> Value {
        self.send(json!({"cmd": "latency", "reset": reset}));
        self.wait_reply("latency", "latency", DEFAULT_DEADLINE)
    }

    /// The "swrtc" camera track sends `width`×`height` frames from now on.
    pub fn video_resize(&mut self, width: u32, height: u32) -> Value {
        self.send(json!({"cmd": "video_resize", "size": [width, height]}));
        self.wait_reply("video_resize", "video_resized", DEFAULT_DEADLINE)
    }

    /// The negotiated codecs (MIME types, the one sent first) of each
    /// transceiver, in m-line order.
    pub fn sender_codecs(&mut self) -> Vec<Vec<String>> {
        self.send(json!({"cmd": "sender_codecs"}));
        let ev = self.wait_reply("sender_codecs", "sender_codecs", DEFAULT_DEADLINE);
        ev["transceivers"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        t["codecs"]
                            .as_array()
                            .map(|c| {
                                c.iter()
                                    .filter_map(|m| m.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of the current peer connection ("pc" of the last `offer`).
    pub fn current_pc(&self) -> Value {
        self.pc.clone()
    }

    /// Waits for the current peer connection to reach `state` ("connected",
    /// "failed", "closed", ...). Events of earlier connections are skipped.
    pub fn wait_connection_state(&mut self, state: &str, deadline: Duration) -> Value {
        let pc = self.pc.clone();
        self.wait_event(deadline, |e| {
            e["event"] == "connection_state" && e["state"] == state && e["pc"] == pc
        })
    }

    /// Waits for the current connection's data channel to open; returns its label.
    pub fn wait_channel_open(&mut self, deadline: Duration) -> String {
        let pc = self.pc.clone();
        let ev = self.wait_event(deadline, |e| e["event"] == "channel_open" && e["pc"] == pc);
        ev["label"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits for a text received on the current connection satisfying `pred`
    /// (any channel, signalling and pings included); returns it.
    pub fn wait_message(&mut self, deadline: Duration, pred: impl Fn(&str) -> bool) -> String {
        let pc = self.pc.clone();
        let ev = self.wait_event(deadline, |e| {
            e["event"] == "message" && e["pc"] == pc && e["text"].as_str().is_some_and(&pred)
        });
        ev["text"].as_str().unwrap_or_default().to_owned()
    }

    /// Polls `audio_stats` until `done(stats)` holds; returns those stats.
    /// Panics with the last stats after `deadline`.
    pub fn wait_audio(&mut self, deadline: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + deadline;
        loop {
            let stats = self.audio_stats();
            if done(&stats) {
                return stats;
            }
            if Instant::now() >= until {
                self.fail(&format!(
                    "audio condition not met within {deadline:?}; last {stats}"
                ));
            }
            // Audio arrives every 20 ms; re-check a few frames later.
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `close` and waits (up to 2 s) for the process to exit, killing it
    /// otherwise. Returns whether it exited on its own.
    pub fn close(&mut self) -> bool {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"{\"cmd\":\"close\"}\n");
            let _ = stdin.flush();
            // Dropping stdin also makes the peer exit once it reads EOF.
        }
        let until = Instant::now() + CLOSE_GRACE;
        // The reader disconnects when the peer's stdout closes (it is exiting).
        while let Ok(ev) = self.events.recv_deadline(until) {
            self.seen.push(ev.clone());
            self.backlog.push_back(ev);
        }
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) if Instant::now() < until => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return false;
                }
            }
        }
    }

    /// The last lines the peer wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let t = self.stderr_tail.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn fail(&mut self, what: &str) -> ! {
        self.pump();
        let skip = self.seen.len().saturating_sub(100);
        let events: Vec<String> = self.seen[skip..].iter().map(abbreviate).collect();
        let status = match self.child.try_wait() {
            Ok(Some(s)) => {
                // Let the stderr reader finish reading what the peer left.
                let _ = self.stderr_done.recv_timeout(Duration::from_secs(1));
                format!("exited: {s}")
            }
            Ok(None) => "running".to_owned(),
            Err(e) => format!("unknown: {e}"),
        };
        panic!(
            "{what}\n--- aiortc peer ({status}) events so far ({} total, last {} shown):\n{}\n\
             --- aiortc peer stderr (tail):\n{}",
            self.seen.len(),
            events.len(),
            events.join("\n"),
            self.stderr_tail()
        );
    }
}

impl Drop for AiortcPeer {
    fn drop(&mut self) {
        self.close();
    }
}

/// The codec names (`VP8`, `H264`, ...) of each video m-line of an SDP, in
/// payload order (RTX and FEC formats included as named).
pub fn video_codecs(sdp: &str) -> Vec<Vec<String>> {
    /// Payload types of one m-line, and the (payload type, codec name) of its rtpmaps.
    type MLine = (Vec<String>, Vec<(String, String)>);
    let mut lines: Vec<MLine> = Vec::new();
    let mut in_video = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video ");
            if in_video {
                let pts = m.split_whitespace().skip(3).map(str::to_owned).collect();
                lines.push((pts, Vec::new()));
            }
        } else if let (true, Some(map)) = (in_video, line.strip_prefix("a=rtpmap:")) {
            if let (Some((pt, rest)), Some(last)) = (map.split_once(' '), lines.last_mut()) {
                let name = rest.split('/').next().unwrap_or_default().to_owned();
                last.1.push((pt.to_owned(), name));
            }
        }
    }
    lines
        .into_iter()
        .map(|(pts, names)| {
            pts.iter()
                .filter_map(|pt| names.iter().find(|(p, _)| p == pt).map(|(_, n)| n.clone()))
                .collect()
        })
        .collect()
}

/// How a decoded frame compares with the library's test pattern
/// (`smallwebrtc::media::video::pattern`), which the aiortc peer sends with
/// `"video_pattern": "swrtc"`.
#[derive(Debug, Clone)]
pub struct PatternMatch {
    /// Top-left corner of the marker found in the frame.
    pub marker: (u32, u32),
    /// The pattern frame index (within one cycle of the marker) it matched.
    pub frame: u64,
    /// Mean absolute error per channel over the whole frame.
    pub mae: [f64; 3],
    /// Mean absolute error per channel over the band the marker moves along.
    pub band_mae: [f64; 3],
}

impl PatternMatch {
    /// The largest error over channels, whole frame and band.
    pub fn worst(&self) -> f64 {
        self.mae
            .iter()
            .chain(&self.band_mae)
            .copied()
            .fold(0.0, f64::max)
    }
}

/// Compares a decoded RGB24 frame with the pattern frame whose marker is
/// where `find_marker` sees it (within 2 pixels). `Err` says why not.
pub fn match_pattern(rgb: &[u8], width: u32, height: u32) -> Result<PatternMatch, String> {
    use smallwebrtc::media::video::pattern;
    if rgb.len() != (width * height * 3) as usize {
        return Err(format!("{} bytes for {width}x{height}", rgb.len()));
    }
    let found = pattern::find_marker(rgb, width, height)
        .ok_or_else(|| "no marker in the band".to_owned())?;
    let size = pattern::marker_size(height);
    let cycle = u64::from(width.saturating_sub(size).max(1));
    let frame = (0..cycle)
        .min_by_key(|&f| {
            let (x, y) = pattern::marker_position(width, height, f);
            x.abs_diff(found.0) + y.abs_diff(found.1)
        })
        .unwrap_or(0);
    let expected_at = pattern::marker_position(width, height, frame);
    if expected_at.0.abs_diff(found.0) > 2 || expected_at.1.abs_diff(found.1) > 2 {
        return Err(format!(
            "marker at {found:?}; the pattern never puts it there (nearest {expected_at:?})"
        ));
    }
    let mut expected = Vec::new();
    pattern::draw(width, height, frame, &mut expected);
    let band = (height * 3 / 4 * width * 3) as usize;
    Ok(PatternMatch {
        marker: found,
        frame,
        mae: pattern::mean_abs_error(rgb, &expected),
        band_mae: pattern::mean_abs_error(&rgb[band..], &expected[band..]),
    })
}

/// Mean colour (R, G, B) of an RGB24 picture.
pub fn mean_colour(rgb: &[u8]) -> [f64; 3] {
    let mut sums = [0u64; 3];
    for px in rgb.chunks_exact(3) {
        for c in 0..3 {
            sums[c] += u64::from(px[c]);
        }
    }
    let n = (rgb.len() / 3).max(1) as f64;
    sums.map(|s| s as f64 / n)
}
