//! Load generator for voice-bot servers that speak Pipecat's SmallWebRTC signalling: our echo
//! example and a Pipecat echo bot (`benches/pipecat_echo_bot.py`) alike. Driven by
//! `benches/scale.sh`, which pins the server and this generator to different cores.
//!
//!     cargo bench --bench loadgen -- --url http://127.0.0.1:7860/api/offer --pid PID \
//!         --label smallwebrtc --json out.json
//!     cargo bench --bench loadgen -- --table ours.json pipecat.json
//!
//! Each session is a browser-like client (audio + video sendrecv m-lines and a "chat" data
//! channel with a `ping: <ms>` every second, like Pipecat's JS client; no video is sent) that
//! POSTs its offer to the URL and then sends 20 ms Opus packets in real time: 200 ms of a
//! 1 kHz tone, 800 ms of silence, over and over, encoded once at start
//! (`smallwebrtc::media::audio::OpusEncoder`, 48 kHz mono, 32 kbit/s). The echo of each
//! burst is found by packet size (an Opus tone packet is several times the size of a silent
//! one), so nothing is decoded. All sessions run on this one thread: one UDP socket each in one
//! mio poll, str0m `Rtc`s driven sans-IO; the HTTP requests run on one helper thread so a slow
//! answer does not stall the media.
//!
//! It ramps the session count (`--steps`), holding each step `--step-secs` after everyone is
//! connected, until the server stops keeping real time: fewer than 99 % of bursts come back
//! within 2 s, or the p95 echo latency exceeds 2 × the single-session p95 (measured over
//! `--single-trials` single sessions in turn, since one session's latency depends on its
//! phase against the server's 20 ms send slots). It then narrows the
//! limit with fresh sets of sessions (`--refine`), and optionally holds the maximum for
//! `--hold-secs` to measure drift. The server's CPU time and RSS come from /proc/PID.
//!
//! Loopback only: the offer URL must be a 127.0.0.0/8 address; every socket binds 127.0.0.1.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{unbounded, Receiver, Sender};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::{json, Value};
use smallwebrtc::media::audio::{OpusDecoder, OpusEncoder};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::config::CryptoProvider;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

// ---------------------------------------------------------------------------------------------
// Fixed parameters of the traffic and the measurement.

/// Packets per burst cycle: 50 × 20 ms = 1 s.
const CYCLE: u64 = 50;
/// Tone packets at the start of each cycle: 10 × 20 ms = 200 ms of 1 kHz.
const TONE_PACKETS: u64 = 10;
const FRAME: Duration = Duration::from_millis(20);
/// Size histogram range (bytes).
const MAX_SIZE: usize = 1500;
/// A loud packet after at least this much quiet starts an echoed burst.
const QUIET_GAP: Duration = Duration::from_millis(400);
/// A burst not back within this is lost.
const RETURN_DEADLINE: Duration = Duration::from_secs(2);
/// Audio of a new session is not judged until this long after it connects (a server may
/// start its pipeline a little after ICE/DTLS is up).
const SESSION_SETTLE: Duration = Duration::from_secs(2);
/// A session that is not connected this long after its POST failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// If the loop falls this far behind the 20 ms schedule, skip ahead instead of bursting.
const MAX_SEND_LAG: Duration = Duration::from_millis(200);
/// How often every session's timers are looked at (the loop's timer resolution).
const TICK: Duration = Duration::from_millis(1);
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// The loop waking this much later than it asked counts as a generator stall: bursts whose
/// flight overlaps one are left out of the statistics (and counted), since a stalled
/// generator reads echoes late. Busy shared machines stall whole processes for 100s of ms.
const STALL: Duration = Duration::from_millis(25);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const WAKER: Token = Token(usize::MAX);

// ---------------------------------------------------------------------------------------------
// Options.

#[derive(Debug, Clone)]
struct Opts {
    url: String,
    pid: Option<u32>,
    label: String,
    steps: Vec<usize>,
    step_secs: f64,
    settle_secs: f64,
    refine: usize,
    /// Single sessions run in turn for the one-session reference.
    single_trials: usize,
    hold_secs: f64,
    budget_secs: f64,
    max_sessions: usize,
    loud_bytes: usize,
    video: bool,
    json: Option<String>,
    trace: Option<String>,
    sizes: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen --url http://127.0.0.1:PORT/api/offer [--pid PID] [--label NAME]\n\
         \x20      [--steps 1,10,25,...] [--step-secs 20] [--settle-secs 3] [--refine 2] [--single-trials 8]\n\
         \x20      [--hold-secs 0] [--budget-secs 360] [--max-sessions 1000] [--loud-bytes 0=auto]\n\
         \x20      [--no-video] [--json FILE] [--trace CSV] [--sizes]\n\
         \x20  or: loadgen --table OURS.json THEIRS.json"
    );
    std::process::exit(2)
}

fn parse_opts(args: Vec<String>) -> Opts {
    let mut o = Opts {
        url: String::new(),
        pid: None,
        label: "server".into(),
        steps: vec![1, 10, 25, 50, 100, 150, 200, 300, 400, 500, 600, 800, 1000],
        step_secs: 20.0,
        settle_secs: 3.0,
        refine: 2,
        single_trials: 8,
        hold_secs: 0.0,
        budget_secs: 360.0,
        max_sessions: 1000,
        loud_bytes: 0,
        video: true,
        json: None,
        trace: None,
        sizes: false,
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--url" => o.url = val(),
            "--pid" => o.pid = Some(val().parse().unwrap_or_else(|_| usage())),
            "--label" => o.label = val(),
            "--steps" => {
                o.steps = val()
                    .split(',')
                    .map(|s| s.trim().parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--step-secs" => o.step_secs = val().parse().unwrap_or_else(|_| usage()),
            "--settle-secs" => o.settle_secs = val().parse().unwrap_or_else(|_| usage()),
            "--refine" => o.refine = val().parse().unwrap_or_else(|_| usage()),
            "--single-trials" => {
                o.single_trials = val().parse::<usize>().unwrap_or_else(|_| usage()).max(1)
            }
            "--hold-secs" => o.hold_secs = val().parse().unwrap_or_else(|_| usage()),
            "--budget-secs" => o.budget_secs = val().parse().unwrap_or_else(|_| usage()),
            "--max-sessions" => o.max_sessions = val().parse().unwrap_or_else(|_| usage()),
            "--loud-bytes" => o.loud_bytes = val().parse().unwrap_or_else(|_| usage()),
            "--no-video" => o.video = false,
            "--json" => o.json = Some(val()),
            "--trace" => o.trace = Some(val()),
            "--sizes" => o.sizes = true,
            "--bench" => {} // added by `cargo bench`
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown option {other}");
                usage()
            }
        }
    }
    o.steps.retain(|&n| n >= 1 && n <= o.max_sessions);
    o.steps.sort_unstable();
    o.steps.dedup();
    o
}

// ---------------------------------------------------------------------------------------------
// Small statistics helpers.

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// utime + stime of a process (or `self`), in seconds.
fn proc_cpu(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return f64::NAN;
    };
    let Some(rest) = stat.rsplit(')').next() else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.len() < 13 {
        return f64::NAN;
    }
    let ut: f64 = f[11].parse().unwrap_or(f64::NAN);
    let st: f64 = f[12].parse().unwrap_or(f64::NAN);
    (ut + st) / 100.0 // USER_HZ
}

/// The first word of a `/proc/PID/status` field (or this process's).
fn proc_status(pid: Option<u32>, key: &str) -> Option<String> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    let v = s.lines().find_map(|l| l.strip_prefix(key))?;
    v.split_whitespace().next().map(str::to_string)
}

/// VmRSS in KiB.
fn proc_rss_kib(pid: Option<u32>) -> f64 {
    proc_status(pid, "VmRSS:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn proc_threads(pid: Option<u32>) -> f64 {
    proc_status(pid, "Threads:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// CPU seconds per thread group of a process: threads named alike (digits and hex ids
/// stripped from `comm`, e.g. `echo-1a2b3c4d` → `echo-`) are summed.
fn thread_groups(pid: Option<u32>) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let dir = match pid {
        Some(p) => format!("/proc/{p}/task"),
        None => "/proc/self/task".to_string(),
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for t in rd.flatten().take(100_000) {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if f.len() < 13 {
            continue;
        }
        let cpu =
            (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0;
        let name: String = comm
            .split('-')
            .map(|part| {
                if part.chars().all(|c| c.is_ascii_hexdigit()) && !part.is_empty() {
                    "#"
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join("-");
        let name = name
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_string();
        *out.entry(name).or_insert(0.0) += cpu;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 over a plain TcpStream, one connection per request (like `fetch`).

struct Url {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/api/offer"),
    };
    let addr: SocketAddr = hostport
        .parse()
        .map_err(|_| format!("{hostport}: want IP:PORT"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr}: the load generator only talks to loopback addresses"
        ));
    }
    Ok(Url {
        addr,
        host: hostport.to_string(),
        path: path.to_string(),
    })
}

fn http_json(url: &Url, method: &str, body: &Value) -> Result<(u16, Value), String> {
    let body = body.to_string();
    let mut s = TcpStream::connect_timeout(&url.addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {}: {e}", url.addr))?;
    s.set_read_timeout(Some(HTTP_TIMEOUT)).ok();
    s.set_write_timeout(Some(HTTP_TIMEOUT)).ok();
    s.set_nodelay(true).ok();
    let req = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.path,
        url.host,
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    // Read the head, then exactly Content-Length bytes (or chunks, or to EOF).
    let mut buf = Vec::with_capacity(8192);
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("response head too large".into());
        }
        let n = s.read(&mut tmp).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response head".into());
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let mut body = buf[head_end..].to_vec();
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < len {
            let n = s.read(&mut tmp).map_err(|e| format!("read body: {e}"))?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&tmp[..n]);
        }
        body.truncate(len);
    } else {
        loop {
            let n = s.read(&mut tmp).map_err(|e| format!("read body: {e}"))?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&tmp[..n]);
        }
        if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            body = dechunk(&body)?;
        }
    }
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    Ok((status, v))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let i = find(b, b"\r\n").ok_or("bad chunk")?;
        let size_str = String::from_utf8_lossy(&b[..i]);
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        b = &b[i + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size {
            return Err("short chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
    Err("too many chunks".into())
}

// ---------------------------------------------------------------------------------------------
// Audio: the pre-encoded cycle, and a reference cost of Opus encode + decode.

/// One 1 s cycle of Opus packets: 10 of 1 kHz tone, 40 of silence. Encoded from a second
/// pass so the encoder state at the tone's start is the steady one.
fn encode_cycle() -> Vec<Arc<[u8]>> {
    let mut enc = OpusEncoder::new(48_000, 1, 32_000, 5, false).expect("Opus encoder");
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    let mut pos: u64 = 0;
    for pass in 0..2 {
        for i in 0..CYCLE {
            let pcm: Vec<i16> = if i < TONE_PACKETS {
                let w = 2.0 * std::f64::consts::PI * 1000.0 / 48_000.0;
                (0..960u64)
                    .map(|k| ((w * (pos + k) as f64).sin() * 0.3 * 32767.0) as i16)
                    .collect()
            } else {
                vec![0; 960]
            };
            pos += 960;
            let n = enc.encode(&pcm, &mut buf).expect("Opus encode");
            if pass == 1 {
                out.push(Arc::from(&buf[..n]));
            }
        }
    }
    out
}

/// CPU seconds per second of audio to decode and re-encode one 48 kHz mono stream at the
/// settings of our server's defaults (32 kbit/s, complexity 5, in-band FEC): the floor of an
/// echo bot's per-session work, for comparison with the measured cost.
fn opus_reference_cost(cycle: &[Arc<[u8]>]) -> f64 {
    let mut dec = OpusDecoder::new(48_000, 1).expect("Opus decoder");
    let mut enc = OpusEncoder::new(48_000, 1, 32_000, 5, true).expect("Opus encoder");
    let mut pcm = vec![0i16; 960];
    let mut out = [0u8; 1500];
    let frames = 1500; // 30 s of audio
    let c0 = proc_cpu(None);
    let t0 = Instant::now();
    for i in 0..frames {
        let p = &cycle[i % cycle.len()];
        let n = dec.decode(p, &mut pcm).expect("decode");
        enc.encode(&pcm[..n], &mut out).expect("encode");
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = proc_cpu(None) - c0;
    // The tick-based process CPU is coarse (10 ms); take the wall time if it is smaller.
    let used = if cpu.is_finite() && cpu > 0.0 {
        cpu.min(wall)
    } else {
        wall
    };
    used / (frames as f64 * 0.02)
}

// ---------------------------------------------------------------------------------------------
// Signalling: one helper thread creates each session's Rtc, POSTs its offer and applies the
// answer, then hands the session to the media loop.

fn crypto() -> Arc<CryptoProvider> {
    static P: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    P.get_or_init(|| Arc::new(str0m::crypto::from_feature_flags()))
        .clone()
}

struct Connect {
    id: usize,
}

enum Made {
    Ok(Box<Session>),
    Failed { id: usize, err: String },
}

fn signalling_thread(
    url: Url,
    video: bool,
    rx: Receiver<Connect>,
    tx: Sender<Made>,
    waker: Arc<Waker>,
) {
    while let Ok(Connect { id }) = rx.recv() {
        let made = match make_session(&url, id, video) {
            Ok(s) => Made::Ok(Box::new(s)),
            Err(err) => Made::Failed { id, err },
        };
        if tx.send(made).is_err() {
            return;
        }
        let _ = waker.wake();
    }
}

fn make_session(url: &Url, id: usize, video: bool) -> Result<Session, String> {
    let socket = StdUdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let now = Instant::now();
    let mut rtc = Rtc::builder()
        .set_crypto_provider(crypto())
        // Deliver audio as it arrives: no hold-back after a gap (str0m holds up to 15 packets by default).
        .set_reordering_size_audio(0)
        .build(now);
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
    let mut api = rtc.sdp_api();
    let audio_mid = api.add_media(
        MediaKind::Audio,
        Direction::SendRecv,
        Some("client".into()),
        None,
        None,
    );
    if video {
        api.add_media(
            MediaKind::Video,
            Direction::SendRecv,
            Some("client".into()),
            None,
            None,
        );
    }
    let cid = api.add_channel("chat".into());
    let (offer, pending) = api.apply().ok_or("str0m made no offer")?;
    let t_post = Instant::now();
    let (status, answer) = http_json(
        url,
        "POST",
        &json!({"sdp": offer.to_sdp_string(), "type": "offer", "pc_id": null, "restart_pc": false}),
    )?;
    let t_answer = Instant::now();
    if status != 200 {
        return Err(format!("POST answered {status}: {answer}"));
    }
    let sdp = answer["sdp"].as_str().ok_or("answer without sdp")?;
    let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("bad answer SDP: {e}"))?;
    apply_answer(&mut rtc, pending, answer)?;
    Ok(Session {
        id,
        rtc,
        socket: UdpSocket::from_std(socket),
        local,
        audio_mid,
        cid,
        pt: None,
        t_post,
        answer_ms: ms(t_answer - t_post),
        connected_at: None,
        channel_open: false,
        next_ping: None,
        rtc_timeout: Instant::now(),
        next_send: None,
        frame: 0,
        bursts: Vec::new(),
        scan_from: 0,
        last_lat: None,
        last_loud: None,
        spurious: 0,
        rx_audio: 0,
        dead: false,
    })
}

fn apply_answer(rtc: &mut Rtc, pending: SdpPendingOffer, answer: SdpAnswer) -> Result<(), String> {
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| format!("accept_answer: {e}"))
}

// ---------------------------------------------------------------------------------------------
// One client session, driven by the media loop.

struct Burst {
    sent: Instant,
    /// Echo latency in ms, once back.
    latency: Option<f32>,
}

struct Session {
    id: usize,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    audio_mid: Mid,
    cid: ChannelId,
    pt: Option<Pt>,
    t_post: Instant,
    answer_ms: f64,
    connected_at: Option<Instant>,
    channel_open: bool,
    next_ping: Option<Instant>,
    rtc_timeout: Instant,
    /// When the next 20 ms packet is due (None until connected).
    next_send: Option<Instant>,
    frame: u64,
    bursts: Vec<Burst>,
    /// First burst that may still be matched.
    scan_from: usize,
    last_lat: Option<f32>,
    last_loud: Option<Instant>,
    spurious: u64,
    rx_audio: u64,
    dead: bool,
}

/// What the loop learns while driving sessions, shared by all of them.
#[derive(Default)]
struct LoopStats {
    /// How late each 20 ms send was, in ms (generator health), since the last take.
    send_lag: Vec<f32>,
    skipped_frames: u64,
    send_errors: u64,
    /// Histogram of received audio packet sizes (bytes, capped at MAX_SIZE).
    sizes: Vec<u64>,
    /// Connect times (POST → ICE+DTLS connected), ms, since the last take.
    connect_ms: Vec<f64>,
    /// str0m timeouts handled and loop wake-ups, since the last take (generator health).
    timeouts: u64,
    wakes: u64,
}

impl Session {
    /// Polls str0m until its next timeout: sends what it transmits, handles its events.
    fn drain(&mut self, now: Instant, loud_bytes: usize, st: &mut LoopStats) {
        for _ in 0..10_000 {
            if !self.rtc.is_alive() {
                self.dead = true;
                self.rtc_timeout = now + Duration::from_secs(3600);
                return;
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    if self.socket.send_to(&t.contents, t.destination).is_err() {
                        st.send_errors += 1;
                    }
                }
                Ok(Output::Event(e)) => self.on_event(e, now, loud_bytes, st),
                Err(_) => {
                    self.rtc.disconnect();
                    self.dead = true;
                }
            }
        }
    }

    fn on_event(&mut self, e: Event, now: Instant, loud_bytes: usize, st: &mut LoopStats) {
        match e {
            Event::Connected if self.connected_at.is_none() => {
                self.connected_at = Some(now);
                // Real clients start talking at any phase of the server's 20 ms send
                // slots, and an echo's latency depends on that phase. Spread the phases
                // (golden-ratio steps over 0..20 ms by session id) so that one session,
                // a few in turn, and many at once all sample them alike.
                let phase = (self.id as f64 * 0.618_033_988_75).fract() * FRAME.as_secs_f64();
                self.next_send = Some(now + Duration::from_secs_f64(phase));
                st.connect_ms.push(ms(now - self.t_post));
            }
            Event::ChannelOpen(cid, _) if cid == self.cid => {
                self.channel_open = true;
                self.next_ping = Some(now + PING_INTERVAL);
            }
            Event::ChannelClose(cid) if cid == self.cid => {
                self.channel_open = false;
                self.next_ping = None;
            }
            Event::MediaData(d) if d.mid == self.audio_mid => {
                self.rx_audio += 1;
                let len = d.data.len();
                if let Some(slot) = st.sizes.get_mut(len.min(MAX_SIZE)) {
                    *slot += 1;
                }
                if len >= loud_bytes {
                    let onset = self
                        .last_loud
                        .is_none_or(|t| now.saturating_duration_since(t) >= QUIET_GAP);
                    self.last_loud = Some(now);
                    if onset {
                        self.match_onset(now);
                    }
                }
            }
            Event::Closed => self.dead = true,
            _ => {}
        }
    }

    /// Pairs an echoed burst's onset with the burst it echoes: among the bursts not yet
    /// matched and already sent, the one whose latency is closest to the last latency (the
    /// newest one for the first match). Bursts skipped over are lost.
    fn match_onset(&mut self, at: Instant) {
        let mut best: Option<(usize, f32)> = None;
        for k in self.scan_from..self.bursts.len() {
            let b = &self.bursts[k];
            if b.sent > at {
                break;
            }
            let lat = ms(at - b.sent) as f32;
            let score = match self.last_lat {
                Some(l) => (lat - l).abs(),
                None => lat, // smallest latency = newest burst
            };
            if best.is_none_or(|(_, s)| score < s) {
                best = Some((k, score));
            }
        }
        match best {
            Some((k, _)) => {
                let lat = ms(at - self.bursts[k].sent) as f32;
                self.bursts[k].latency = Some(lat);
                self.last_lat = Some(lat);
                self.scan_from = k + 1;
            }
            None => self.spurious += 1,
        }
    }

    /// Sends the packets that are due, and a ping if due.
    fn on_timers(
        &mut self,
        now: Instant,
        cycle: &[Arc<[u8]>],
        loud_bytes: usize,
        st: &mut LoopStats,
    ) {
        if self.dead {
            return;
        }
        if now >= self.rtc_timeout {
            st.timeouts += 1;
            if self.rtc.handle_input(Input::Timeout(now)).is_err() {
                self.dead = true;
                return;
            }
            self.drain(now, loud_bytes, st);
        }
        if let Some(due) = self.next_send {
            if now >= due {
                let lag = now - due;
                let mut due = due;
                if lag > MAX_SEND_LAG {
                    let skip = (lag.as_micros() / FRAME.as_micros()) as u64;
                    st.skipped_frames += skip;
                    self.frame += skip;
                    due += FRAME * skip as u32;
                }
                st.send_lag.push(ms(now - due) as f32);
                self.send_audio(now, cycle);
                self.next_send = Some(due + FRAME);
                self.drain(now, loud_bytes, st);
            }
        }
        if let Some(p) = self.next_ping {
            if now >= p && self.channel_open {
                let text = format!("ping: {}", unix_ms());
                if let Some(mut ch) = self.rtc.channel(self.cid) {
                    let _ = ch.write(false, text.as_bytes());
                }
                self.next_ping =
                    Some(if now - p > PING_INTERVAL { now } else { p } + PING_INTERVAL);
                self.drain(now, loud_bytes, st);
            }
        }
    }

    fn send_audio(&mut self, now: Instant, cycle: &[Arc<[u8]>]) {
        let i = self.frame % CYCLE;
        let pkt = cycle[i as usize].clone();
        let rtp_time = MediaTime::new(self.frame * 960, Frequency::FORTY_EIGHT_KHZ);
        self.frame += 1;
        let Some(writer) = self.rtc.writer(self.audio_mid) else {
            return;
        };
        if self.pt.is_none() {
            self.pt = writer
                .payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .map(|p| p.pt());
        }
        let Some(pt) = self.pt else { return };
        if writer.write(pt, now, rtp_time, pkt).is_ok() && i == 0 {
            self.bursts.push(Burst {
                sent: now,
                latency: None,
            });
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.rtc_timeout;
        if let Some(s) = self.next_send {
            t = t.min(s);
        }
        if let Some(p) = self.next_ping.filter(|_| self.channel_open) {
            t = t.min(p);
        }
        t
    }

    /// Closes like a browser's `pc.close()`: RTCP BYE, SCTP shutdown, DTLS close_notify.
    fn close(&mut self, st: &mut LoopStats) {
        if self.rtc.is_alive() {
            let _ = self.rtc.close();
            for _ in 0..1000 {
                match self.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(_)) => {}
                    Ok(Output::Timeout(_)) | Err(_) => break,
                }
                if !self.rtc.is_alive() {
                    break;
                }
            }
        }
        let _ = st;
        self.dead = true;
    }
}

// ---------------------------------------------------------------------------------------------
// The media loop and the ramp.

struct Driver {
    opts: Opts,
    poll: Poll,
    events: Events,
    sessions: HashMap<usize, Session>,
    /// Sessions asked for and not yet made (id → when asked).
    pending: HashMap<usize, Instant>,
    failed: Vec<String>,
    next_id: usize,
    connect_tx: Sender<Connect>,
    made_rx: Receiver<Made>,
    cycle: Vec<Arc<[u8]>>,
    st: LoopStats,
    buf: Vec<u8>,
    /// POST → answer times (ms) of the sessions made since the last take.
    answer_ms: Vec<f64>,
    t_start: Instant,
    /// With `--trace`: one CSV row per burst of every closed session.
    trace: String,
    /// Generator stalls (asked to wake, woke), oldest first.
    stalls: Vec<(Instant, Instant)>,
}

#[derive(Debug, Clone, Default)]
struct StepResult {
    phase: String,
    /// Bursts left out because the generator stalled during their flight.
    excluded: usize,
    gen_stalls: usize,
    gen_stall_ms: f64,
    gen_stall_max_ms: f64,
    /// The window, in seconds since the generator started.
    t0_s: f64,
    t1_s: f64,
    n: usize,
    connected: usize,
    window_s: f64,
    bursts: usize,
    returned: usize,
    lat_med: f64,
    lat_p95: f64,
    lat_p99: f64,
    drift_ms: f64,
    server_cpu_s: f64,
    cpu_per_session_s: f64,
    server_cores: f64,
    rss_kib: f64,
    threads: f64,
    gen_cores: f64,
    gen_lag_p99: f64,
    gen_skipped: u64,
    connect_med: f64,
    connect_p95: f64,
    answer_med: f64,
    failed: usize,
    session_lat_med_spread: (f64, f64),
    gen_timeouts_per_s: f64,
    gen_wakes_per_s: f64,
    loadavg: String,
    /// Server cores used per thread group during the window, largest first.
    thread_cores: Vec<(String, f64)>,
    /// Every returned burst's latency, ms (for merging the single-session trials).
    lats: Vec<f64>,
    pass: bool,
}

impl StepResult {
    fn returned_frac(&self) -> f64 {
        if self.bursts == 0 {
            0.0
        } else {
            self.returned as f64 / self.bursts as f64
        }
    }

    fn json(&self) -> Value {
        json!({
            "phase": self.phase, "excluded_bursts_generator_stalled": self.excluded,
            "generator_stalls": self.gen_stalls, "generator_stalled_ms": self.gen_stall_ms,
            "generator_stall_max_ms": self.gen_stall_max_ms, "window_start_s": self.t0_s, "window_end_s": self.t1_s, "sessions": self.n, "connected": self.connected,
            "window_s": self.window_s, "bursts": self.bursts, "returned": self.returned,
            "returned_frac": self.returned_frac(),
            "latency_median_ms": self.lat_med, "latency_p95_ms": self.lat_p95,
            "latency_p99_ms": self.lat_p99, "drift_ms": self.drift_ms,
            "server_cpu_s": self.server_cpu_s, "cpu_s_per_session_s": self.cpu_per_session_s,
            "server_cores": self.server_cores, "rss_kib": self.rss_kib,
            "server_threads": self.threads, "generator_cores": self.gen_cores,
            "generator_send_lag_p99_ms": self.gen_lag_p99, "generator_skipped_frames": self.gen_skipped,
            "connect_median_ms": self.connect_med, "connect_p95_ms": self.connect_p95,
            "answer_median_ms": self.answer_med, "failed_sessions": self.failed,
            "per_session_latency_median_min_ms": self.session_lat_med_spread.0,
            "per_session_latency_median_max_ms": self.session_lat_med_spread.1,
            "generator_str0m_timeouts_per_s": self.gen_timeouts_per_s,
            "generator_wakes_per_s": self.gen_wakes_per_s,
            "loadavg": self.loadavg,
            "server_thread_cores": self.thread_cores.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "real_time": self.pass,
        })
    }
}

impl Driver {
    fn new(opts: Opts, url: Url) -> Driver {
        let poll = Poll::new().expect("mio poll");
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).expect("mio waker"));
        let (connect_tx, connect_rx) = unbounded();
        let (made_tx, made_rx) = unbounded();
        let video = opts.video;
        std::thread::Builder::new()
            .name("loadgen-http".into())
            .spawn(move || signalling_thread(url, video, connect_rx, made_tx, waker))
            .expect("spawn signalling thread");
        Driver {
            opts,
            poll,
            events: Events::with_capacity(1024),
            sessions: HashMap::new(),
            pending: HashMap::new(),
            failed: Vec::new(),
            next_id: 0,
            connect_tx,
            made_rx,
            cycle: encode_cycle(),
            st: LoopStats {
                sizes: vec![0; MAX_SIZE + 1],
                ..LoopStats::default()
            },
            buf: vec![0u8; 2048],
            answer_ms: Vec::new(),
            t_start: Instant::now(),
            trace: String::from("session,connected_s,sent_s,latency_ms\n"),
            stalls: Vec::new(),
        }
    }

    fn live(&self) -> usize {
        self.sessions.values().filter(|s| !s.dead).count()
    }

    fn add_sessions(&mut self, n: usize) {
        for _ in 0..n {
            let id = self.next_id;
            self.next_id += 1;
            self.pending.insert(id, Instant::now());
            let _ = self.connect_tx.send(Connect { id });
        }
    }

    /// Runs the loop until every asked-for session is connected or failed (bounded).
    fn wait_connected(&mut self, limit: Duration) {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            let waiting = !self.pending.is_empty()
                || self
                    .sessions
                    .values()
                    .any(|s| !s.dead && s.connected_at.is_none());
            if !waiting {
                return;
            }
            self.run_for(Duration::from_millis(50));
        }
    }

    fn close_all(&mut self) {
        // Let the helper finish what it was asked first (bounded), so nothing arrives later.
        let end = Instant::now() + Duration::from_secs(60);
        while !self.pending.is_empty() && Instant::now() < end {
            self.run_for(Duration::from_millis(50));
        }
        let ids: Vec<usize> = self.sessions.keys().copied().collect();
        for id in ids {
            if let Some(mut s) = self.sessions.remove(&id) {
                if self.opts.trace.is_some() {
                    use std::fmt::Write as _;
                    let c = s.connected_at.map(|c| (c - self.t_start).as_secs_f64());
                    for b in &s.bursts {
                        let _ = writeln!(
                            self.trace,
                            "{},{},{:.3},{}",
                            s.id,
                            c.map(|c| format!("{c:.3}")).unwrap_or_default(),
                            (b.sent - self.t_start).as_secs_f64(),
                            b.latency.map(|l| format!("{l:.1}")).unwrap_or_default()
                        );
                    }
                }
                s.close(&mut self.st);
                let _ = self.poll.registry().deregister(&mut s.socket);
            }
        }
    }

    /// Drives every session for `d`.
    fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        let mut last_scan = Instant::now() - TICK;
        let mut next_wake = Instant::now();
        loop {
            let now = Instant::now();
            if now >= end {
                return;
            }
            // Sleep until the earliest deadline, but never less than one tick after the last
            // scan (deadlines are only served by scans, so waking before would spin).
            let wait = next_wake
                .max(last_scan + TICK)
                .min(end)
                .saturating_duration_since(now);
            let asked = now + wait;
            if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
                if e.kind() != ErrorKind::Interrupted {
                    panic!("poll: {e}");
                }
            }
            let woke = Instant::now();
            if woke.saturating_duration_since(asked) > STALL && self.stalls.len() < 100_000 {
                self.stalls.push((asked, woke));
            }
            self.st.wakes += 1;
            let tokens: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
            for tok in tokens {
                if tok == WAKER {
                    self.take_made();
                    continue;
                }
                self.read_socket(tok.0);
            }
            let now = Instant::now();
            if now.saturating_duration_since(last_scan) >= TICK {
                last_scan = now;
                next_wake = now + Duration::from_millis(100);
                let (loud, cycle, st) = (self.opts.loud_bytes, &self.cycle, &mut self.st);
                for s in self.sessions.values_mut() {
                    s.on_timers(now, cycle, loud, st);
                    if !s.dead {
                        if s.connected_at.is_none() && now - s.t_post > CONNECT_TIMEOUT {
                            s.dead = true;
                            eprintln!(
                                "[{}] session {} not connected in {CONNECT_TIMEOUT:?}",
                                self.opts.label, s.id
                            );
                            continue;
                        }
                        next_wake = next_wake.min(s.next_deadline());
                    }
                }
            }
        }
    }

    fn take_made(&mut self) {
        while let Ok(m) = self.made_rx.try_recv() {
            match m {
                Made::Ok(mut s) => {
                    self.pending.remove(&s.id);
                    if let Err(e) = self.poll.registry().register(
                        &mut s.socket,
                        Token(s.id),
                        Interest::READABLE,
                    ) {
                        self.failed.push(format!("register: {e}"));
                        continue;
                    }
                    self.answer_ms.push(s.answer_ms);
                    let now = Instant::now();
                    // Start ICE at once rather than at str0m's next timeout.
                    let _ = s.rtc.handle_input(Input::Timeout(now));
                    s.drain(now, self.opts.loud_bytes, &mut self.st);
                    self.sessions.insert(s.id, *s);
                }
                Made::Failed { id, err } => {
                    self.pending.remove(&id);
                    if self.failed.len() < 20 {
                        eprintln!("[{}] session {id} failed: {err}", self.opts.label);
                    }
                    self.failed.push(err);
                }
            }
        }
    }

    fn read_socket(&mut self, id: usize) {
        let loud = self.opts.loud_bytes;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        for _ in 0..256 {
            match s.socket.recv_from(&mut self.buf) {
                Ok((n, source)) => {
                    let now = Instant::now();
                    if s.dead {
                        continue;
                    }
                    let Ok(contents) = (&self.buf[..n]).try_into() else {
                        continue;
                    };
                    let input = Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: s.local,
                            contents,
                        },
                    );
                    if s.rtc.handle_input(input).is_ok() {
                        s.drain(now, loud, &mut self.st);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return, // e.g. ICMP port unreachable from a closed peer
            }
        }
    }

    /// Holds the current sessions for `window` and measures the bursts sent in it.
    fn measure(&mut self, phase: &str, window: Duration, single_p95: Option<f64>) -> StepResult {
        let pid = self.opts.pid;
        self.st.send_lag.clear();
        self.st.skipped_frames = 0;
        self.st.timeouts = 0;
        self.st.wakes = 0;
        let (c0, g0) = (proc_cpu(pid), proc_cpu(None));
        let groups0 = thread_groups(pid);
        let w0 = Instant::now();
        self.run_for(window);
        let w1 = Instant::now();
        let (c1, g1) = (proc_cpu(pid), proc_cpu(None));
        let groups1 = thread_groups(pid);
        let mut thread_cores: Vec<(String, f64)> = groups1
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    (v - groups0.get(k).copied().unwrap_or(0.0)) / (w1 - w0).as_secs_f64(),
                )
            })
            .filter(|(_, v)| *v > 0.0)
            .collect();
        thread_cores.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
        let wall = (w1 - w0).as_secs_f64();
        let judge_end = w1 - RETURN_DEADLINE;
        let third = (judge_end.saturating_duration_since(w0)) / 3;
        let n = self.live();
        let mut lats = Vec::new();
        let (mut first, mut last) = (Vec::new(), Vec::new());
        let (mut bursts, mut returned, mut excluded) = (0, 0, 0);
        let stalls: Vec<(Instant, Instant)> = self
            .stalls
            .iter()
            .copied()
            .filter(|&(_, w)| w >= w0 - RETURN_DEADLINE)
            .collect();
        let stall_ms: f64 = stalls
            .iter()
            .filter(|&&(a, _)| a >= w0)
            .map(|&(a, w)| ms(w - a))
            .sum();
        let stall_max_ms = stalls
            .iter()
            .filter(|&&(a, _)| a >= w0)
            .map(|&(a, w)| ms(w - a))
            .fold(0.0, f64::max);
        let mut per_session = Vec::new();
        for s in self.sessions.values() {
            let Some(c) = s.connected_at else { continue };
            let from = w0.max(c + SESSION_SETTLE);
            let mut mine = Vec::new();
            for b in &s.bursts {
                if b.sent < from || b.sent > judge_end {
                    continue;
                }
                let flight_end = b.sent
                    + b.latency
                        .map(|l| Duration::from_secs_f64(l as f64 / 1e3))
                        .unwrap_or(RETURN_DEADLINE);
                let flight_start = b.sent - Duration::from_millis(50);
                if stalls
                    .iter()
                    .any(|&(a, w)| a < flight_end && w > flight_start)
                {
                    excluded += 1;
                    continue;
                }
                bursts += 1;
                if let Some(l) = b.latency {
                    let l = l as f64;
                    if l <= ms(RETURN_DEADLINE) {
                        returned += 1;
                        lats.push(l);
                        mine.push(l);
                        if b.sent < w0 + third {
                            first.push(l);
                        } else if b.sent >= w0 + third * 2 {
                            last.push(l);
                        }
                    }
                }
            }
            if !mine.is_empty() {
                per_session.push(quantile(&mut mine, 0.5));
            }
        }
        let mut lag: Vec<f64> = self.st.send_lag.iter().map(|&v| v as f64).collect();
        let mut cm = std::mem::take(&mut self.st.connect_ms);
        let mut am = std::mem::take(&mut self.answer_ms);
        let dead = self.sessions.len() - n;
        let failed = self.failed.len() + dead;
        let mut r = StepResult {
            phase: phase.into(),
            excluded,
            gen_stalls: stalls.iter().filter(|&&(a, _)| a >= w0).count(),
            gen_stall_ms: stall_ms,
            gen_stall_max_ms: stall_max_ms,
            t0_s: (w0 - self.t_start).as_secs_f64(),
            t1_s: (w1 - self.t_start).as_secs_f64(),
            n,
            connected: self
                .sessions
                .values()
                .filter(|s| s.connected_at.is_some() && !s.dead)
                .count(),
            window_s: wall,
            bursts,
            returned,
            lat_med: quantile(&mut lats, 0.5),
            lat_p95: quantile(&mut lats, 0.95),
            lat_p99: quantile(&mut lats, 0.99),
            lats,
            drift_ms: quantile(&mut last, 0.5) - quantile(&mut first, 0.5),
            server_cpu_s: c1 - c0,
            cpu_per_session_s: (c1 - c0) / (wall * n.max(1) as f64),
            server_cores: (c1 - c0) / wall,
            rss_kib: proc_rss_kib(pid),
            threads: proc_threads(pid),
            gen_cores: (g1 - g0) / wall,
            gen_lag_p99: quantile(&mut lag, 0.99),
            gen_skipped: self.st.skipped_frames,
            connect_med: quantile(&mut cm, 0.5),
            connect_p95: quantile(&mut cm, 0.95),
            answer_med: quantile(&mut am, 0.5),
            failed,
            session_lat_med_spread: (
                per_session.iter().cloned().fold(f64::NAN, f64::min),
                per_session.iter().cloned().fold(f64::NAN, f64::max),
            ),
            gen_timeouts_per_s: self.st.timeouts as f64 / wall,
            gen_wakes_per_s: self.st.wakes as f64 / wall,
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            thread_cores,
            pass: false,
        };
        let p95_limit = single_p95.map(|p| 2.0 * p).unwrap_or(f64::INFINITY);
        r.pass = n > 0
            && failed == 0
            && r.connected == n
            && r.returned_frac() >= 0.99
            && r.lat_p95 <= p95_limit;
        r
    }

    fn print(&self, r: &StepResult) {
        eprintln!(
            "[{}] {:>6} N={:<4} conn={:<4} bursts={:<6} returned={:>6.2}% lat med/p95/p99={:>6.1}/{:>6.1}/{:>6.1} ms drift={:>+6.1} | server {:.3} cores, {:.5} cpu-s/session-s, RSS {:.1} MiB, {} thr | connect med/p95 {:.0}/{:.0} ms (answer {:.0}) | per-session med {:.0}..{:.0} ms | gen {:.2} cores, lag p99 {:.1} ms, skipped {}, {:.0} timeouts/s, {:.0} wakes/s | load {} | {} (t={:.0}s)",
            self.opts.label, r.phase, r.n, r.connected, r.bursts, r.returned_frac() * 100.0,
            r.lat_med, r.lat_p95, r.lat_p99, r.drift_ms, r.server_cores, r.cpu_per_session_s,
            r.rss_kib / 1024.0, r.threads, r.connect_med, r.connect_p95, r.answer_med,
            r.session_lat_med_spread.0, r.session_lat_med_spread.1,
            r.gen_cores, r.gen_lag_p99, r.gen_skipped, r.gen_timeouts_per_s, r.gen_wakes_per_s, r.loadavg,
            if r.pass { "REAL-TIME" } else { "NOT real-time" },
            self.t_start.elapsed().as_secs_f64(),
        );
        let top: Vec<String> = r
            .thread_cores
            .iter()
            .take(6)
            .map(|(k, v)| format!("{k} {v:.3}"))
            .collect();
        eprintln!(
            "[{}]        server cores by thread: {} | generator stalls {} ({:.0} ms, longest {:.0} ms), bursts left out {}",
            self.opts.label,
            top.join(", "),
            r.gen_stalls,
            r.gen_stall_ms,
            r.gen_stall_max_ms,
            r.excluded
        );
    }

    /// Closes everything and waits (bounded) for the server's CPU to calm down.
    fn reset(&mut self) {
        self.close_all();
        let pid = self.opts.pid;
        for _ in 0..10 {
            let c0 = proc_cpu(pid);
            std::thread::sleep(Duration::from_secs(1));
            if proc_cpu(pid) - c0 < 0.1 {
                break;
            }
        }
        self.failed.clear();
        self.st.connect_ms.clear();
        self.answer_ms.clear();
    }

    /// Sets the size from which a received audio packet is "loud" (the echoed tone), from the
    /// sizes of the audio the first session got back, as the servers' encoders differ (our
    /// server's silence is ~25 bytes and its tone ~80 at 32 kbit/s with FEC; aiortc's, at
    /// 96 kbit/s, ~80 and ~250). Silence is 80 % of the packets and the tone 20 %, so the
    /// median is silence and the 97th percentile tone; the threshold sits 30 % of the way up
    /// from silence. Until then (`--loud-bytes 0`) every packet counts as loud: no onsets.
    fn calibrate(&mut self) {
        self.st.sizes.iter_mut().for_each(|c| *c = 0);
        self.run_for(Duration::from_secs(3));
        let total: u64 = self.st.sizes.iter().sum();
        let pct = |q: f64| {
            let want = (total as f64 * q).ceil() as u64;
            let mut acc = 0;
            for (len, &c) in self.st.sizes.iter().enumerate() {
                acc += c;
                if acc >= want.max(1) {
                    return len;
                }
            }
            MAX_SIZE
        };
        let (quiet, loud) = (pct(0.5), pct(0.97));
        let thr = quiet + ((loud.saturating_sub(quiet)) * 3 / 10).max(4);
        eprintln!(
            "[{}] echoed packet sizes: median {quiet} bytes (silence), p97 {loud} bytes (tone) over {total} packets; loud threshold {thr} bytes",
            self.opts.label
        );
        if total < 100 || (loud as f64) < quiet as f64 * 1.5 {
            eprintln!(
                "[{}] warning: the echo's tone and silence are hard to tell apart by size",
                self.opts.label
            );
        }
        self.opts.loud_bytes = thr;
        for s in self.sessions.values_mut() {
            s.last_loud = None;
            s.last_lat = None;
            s.scan_from = s.bursts.len();
        }
    }

    fn step_to(
        &mut self,
        n: usize,
        phase: &str,
        window: Duration,
        single_p95: Option<f64>,
    ) -> StepResult {
        let add = n.saturating_sub(self.sessions.len() + self.pending.len());
        self.add_sessions(add);
        self.wait_connected(Duration::from_secs(30) + Duration::from_millis(200 * add as u64));
        self.run_for(Duration::from_secs_f64(self.opts.settle_secs));
        if self.opts.loud_bytes == 0 {
            self.calibrate();
        }
        let r = self.measure(phase, window, single_p95);
        self.print(&r);
        r
    }
}

fn run(opts: Opts) {
    let url = parse_url(&opts.url).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let pid = opts.pid;
    let mut d = Driver::new(opts.clone(), url);
    let sizes: Vec<usize> = d.cycle.iter().map(|p| p.len()).collect();
    eprintln!(
        "[{}] sending Opus packets of {:?} bytes (tone) and {:?} bytes (silence)",
        opts.label,
        &sizes[..TONE_PACKETS as usize],
        &sizes[TONE_PACKETS as usize..],
    );
    let opus_ref = opus_reference_cost(&d.cycle);
    eprintln!(
        "[{}] reference: Opus decode + encode (48 kHz mono, 32 kbit/s, complexity 5, FEC) costs {:.5} CPU-s per session-second here",
        opts.label, opus_ref
    );
    let rss0 = proc_rss_kib(pid);
    let cpu_idle = {
        let c0 = proc_cpu(pid);
        std::thread::sleep(Duration::from_secs(2));
        (proc_cpu(pid) - c0) / 2.0
    };
    eprintln!(
        "[{}] server idle: RSS {:.1} MiB, {:.3} cores, {} threads",
        opts.label,
        rss0 / 1024.0,
        cpu_idle,
        proc_threads(pid)
    );
    let window = Duration::from_secs_f64(opts.step_secs);
    let budget = Duration::from_secs_f64(opts.budget_secs);
    let mut steps: Vec<StepResult> = Vec::new();
    let mut single: Option<StepResult> = None;
    let mut best: Option<StepResult> = None;
    let mut fail: Option<StepResult> = None;
    for &n in &opts.steps {
        let mut r = d.step_to(n, "ramp", window, single.as_ref().map(|s| s.lat_p95));
        steps.push(r.clone());
        // The reference step gets two more tries from scratch: one stall of a busy machine
        // must not end the run.
        for _ in 0..2 {
            if single.is_some() || r.pass || n != 1 {
                break;
            }
            eprintln!("[{}] retrying the single-session step", opts.label);
            d.reset();
            r = d.step_to(n, "ramp", window, None);
            steps.push(r.clone());
        }
        if n == opts.steps[0] && single.is_none() {
            if n != 1 || !r.pass {
                eprintln!(
                    "[{}] the first step must be 1 session and keep real time",
                    opts.label
                );
                fail = Some(r);
                break;
            }
            // One session's latency depends on where its packets fall between the
            // server's 20 ms send slots, a phase fixed for the session's life. The
            // reference takes several sessions in turn, so it covers the phases the way
            // the many sessions of a later step do.
            let mut merged = r.clone();
            for _ in 1..opts.single_trials {
                d.reset();
                // Shorter windows: the phase, not the window, is what varies.
                let t = d.step_to(1, "single", (window / 2).max(Duration::from_secs(8)), None);
                steps.push(t.clone());
                if t.pass {
                    merged.lats.extend_from_slice(&t.lats);
                    merged.bursts += t.bursts;
                    merged.returned += t.returned;
                }
            }
            merged.lat_med = quantile(&mut merged.lats, 0.5);
            merged.lat_p95 = quantile(&mut merged.lats, 0.95);
            merged.lat_p99 = quantile(&mut merged.lats, 0.99);
            eprintln!(
                "[{}] single-session reference over {} sessions in turn: latency med/p95 {:.1}/{:.1} ms",
                opts.label, opts.single_trials, merged.lat_med, merged.lat_p95
            );
            single = Some(merged);
            d.reset();
        }
        if r.pass {
            best = Some(r);
        } else {
            fail = Some(r);
            break;
        }
        if d.t_start.elapsed() > budget {
            eprintln!("[{}] time budget spent; stopping the ramp", opts.label);
            break;
        }
    }
    // Narrow the limit between the last real-time step and the first that was not, each
    // probe with a fresh set of sessions.
    if let (Some(s), Some(_)) = (&single, &fail) {
        let sp95 = s.lat_p95;
        for _ in 0..opts.refine {
            let (Some(lo), Some(hi)) = (best.as_ref().map(|b| b.n), fail.as_ref().map(|f| f.n))
            else {
                break;
            };
            if hi as f64 <= lo as f64 * 1.15 || hi - lo < 2 || d.t_start.elapsed() > budget {
                break;
            }
            let mid = (lo + hi) / 2;
            d.reset();
            let r = d.step_to(mid, "refine", window, Some(sp95));
            steps.push(r.clone());
            if r.pass {
                best = Some(r);
            } else {
                fail = Some(r);
            }
        }
    }
    // Hold the maximum with fresh sessions, for drift.
    let mut hold: Option<StepResult> = None;
    if let (Some(b), Some(s)) = (&best, &single) {
        if opts.hold_secs > 0.0 && b.n > 1 {
            d.reset();
            let r = d.step_to(
                b.n,
                "hold",
                Duration::from_secs_f64(opts.hold_secs),
                Some(s.lat_p95),
            );
            steps.push(r.clone());
            hold = Some(r);
        }
    }
    d.close_all();
    if opts.sizes {
        let h: Vec<String> =
            d.st.sizes
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(len, c)| format!("{len}:{c}"))
                .collect();
        eprintln!(
            "[{}] received audio packet sizes (bytes:count): {}",
            opts.label,
            h.join(" ")
        );
    }
    let at_max = hold.clone().or(best.clone());
    let summary = json!({
        "label": opts.label,
        "url": opts.url,
        "max_sessions": best.as_ref().map(|b| b.n).unwrap_or(0),
        "first_not_real_time": fail.as_ref().map(|f| f.n),
        "opus_reference_cpu_s_per_session_s": opus_ref,
        "server_idle_rss_kib": rss0,
        "server_idle_cores": cpu_idle,
        "single": single.as_ref().map(|s| s.json()),
        "best": best.as_ref().map(|b| b.json()),
        "hold": hold.as_ref().map(|h| h.json()),
        "fail": fail.as_ref().map(|f| f.json()),
        "at_max": at_max.as_ref().map(|m| m.json()),
        "rss_per_session_kib": best.as_ref().map(|b| (b.rss_kib - rss0) / b.n as f64),
        "steps": steps.iter().map(|s| s.json()).collect::<Vec<_>>(),
        "send_errors": d.st.send_errors,
    });
    if let Some(path) = &opts.trace {
        if let Err(e) = std::fs::write(path, &d.trace) {
            eprintln!("cannot write {path}: {e}");
        }
    }
    match &opts.json {
        Some(path) => {
            if let Err(e) = std::fs::write(path, format!("{summary}\n")) {
                eprintln!("cannot write {path}: {e}");
            }
        }
        None => println!("{summary}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The side-by-side table.

fn table(ours_path: &str, theirs_path: &str) {
    let load = |p: &str| -> Value {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| serde_json::from_str(s.trim()).ok())
            .unwrap_or(Value::Null)
    };
    let (a, b) = (load(ours_path), load(theirs_path));
    let f = |v: &Value, path: &[&str]| -> f64 {
        let mut x = v;
        for k in path {
            x = &x[*k];
        }
        x.as_f64()
            .or_else(|| x.as_bool().map(|b| if b { 1.0 } else { 0.0 }))
            .unwrap_or(f64::NAN)
    };
    struct Row {
        name: &'static str,
        a: f64,
        b: f64,
        unit: &'static str,
        /// The ratio is written "ours is N × better": theirs/ours when lower is better.
        lower_better: bool,
        prec: usize,
    }
    let row = |name, path: &[&str], unit, lower_better, prec| Row {
        name,
        a: f(&a, path),
        b: f(&b, path),
        unit,
        lower_better,
        prec,
    };
    let rows = vec![
        row(
            "max real-time sessions (server on 1 core)",
            &["max_sessions"],
            "",
            false,
            0,
        ),
        row(
            "CPU-s per session-second at the max",
            &["best", "cpu_s_per_session_s"],
            "",
            true,
            5,
        ),
        Row {
            name: "sessions per fully used core (1 / CPU-s per s-s)",
            a: 1.0 / f(&a, &["best", "cpu_s_per_session_s"]),
            b: 1.0 / f(&b, &["best", "cpu_s_per_session_s"]),
            unit: "",
            lower_better: false,
            prec: 0,
        },
        row(
            "RSS per session at the max",
            &["rss_per_session_kib"],
            "KiB",
            true,
            0,
        ),
        row(
            "connect time, 1 session (POST -> ICE+DTLS)",
            &["single", "connect_median_ms"],
            "ms",
            true,
            1,
        ),
        row(
            "connect time at the max, median",
            &["at_max", "connect_median_ms"],
            "ms",
            true,
            1,
        ),
        row(
            "connect time at the max, p95",
            &["at_max", "connect_p95_ms"],
            "ms",
            true,
            1,
        ),
        row(
            "echo latency, 1 session, median",
            &["single", "latency_median_ms"],
            "ms",
            true,
            1,
        ),
        row(
            "echo latency, 1 session, p95",
            &["single", "latency_p95_ms"],
            "ms",
            true,
            1,
        ),
        row(
            "echo latency at the max, median",
            &["at_max", "latency_median_ms"],
            "ms",
            true,
            1,
        ),
        row(
            "echo latency at the max, p95",
            &["at_max", "latency_p95_ms"],
            "ms",
            true,
            1,
        ),
        row(
            "bursts returned at the max",
            &["at_max", "returned_frac"],
            "",
            false,
            4,
        ),
        row(
            "latency drift at the max (last - first third)",
            &["at_max", "drift_ms"],
            "ms",
            true,
            1,
        ),
        row(
            "hold time at the max",
            &["at_max", "window_s"],
            "s",
            false,
            0,
        ),
        row(
            "real time kept over the hold (1 yes, 0 no)",
            &["at_max", "real_time"],
            "",
            false,
            0,
        ),
        row(
            "server threads at the max",
            &["at_max", "server_threads"],
            "",
            true,
            0,
        ),
        row(
            "Opus dec+enc reference, CPU-s per session-s",
            &["opus_reference_cpu_s_per_session_s"],
            "",
            true,
            5,
        ),
        row(
            "server cores used at the first failing step",
            &["fail", "server_cores"],
            "",
            false,
            2,
        ),
    ];
    let la = a["label"].as_str().unwrap_or("ours").to_string();
    let lb = b["label"].as_str().unwrap_or("theirs").to_string();
    println!();
    println!("| {:<46} | {:>14} | {:>14} | {:>9} |", "", la, lb, "ratio");
    println!("|{:-<48}|{:->16}|{:->16}|{:->11}|", "", "", "", "");
    for r in rows {
        let fmt = |v: f64| {
            if v.is_nan() {
                "n/a".to_string()
            } else {
                format!(
                    "{:.*}{}{}",
                    r.prec,
                    v,
                    if r.unit.is_empty() { "" } else { " " },
                    r.unit
                )
            }
        };
        let no_ratio = r.a.is_nan()
            || r.b.is_nan()
            || r.a == 0.0
            || r.b == 0.0
            || r.name.starts_with("latency drift")
            || r.name.starts_with("hold")
            || r.name.starts_with("real time")
            || r.name.starts_with("bursts")
            || r.name.starts_with("Opus")
            || r.name.starts_with("server cores");
        let ratio = if no_ratio {
            "".to_string()
        } else if r.lower_better {
            format!("{:.2}x", r.b / r.a)
        } else {
            format!("{:.2}x", r.a / r.b)
        };
        println!(
            "| {:<46} | {:>14} | {:>14} | {:>9} |",
            r.name,
            fmt(r.a),
            fmt(r.b),
            ratio
        );
    }
    println!();
    println!("ratio: how many times better {la} is than {lb} (above 1: {la} is better).");
    let cpu_a = f(&a, &["best", "cpu_s_per_session_s"]);
    let opus = f(&a, &["opus_reference_cpu_s_per_session_s"]);
    if cpu_a.is_finite() && opus.is_finite() && opus > 0.0 {
        println!(
            "{la}: CPU per session = {:.2} x the Opus decode + encode reference.",
            cpu_a / opus
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return; // cargo bench discovery
    }
    if let Some(i) = args.iter().position(|a| a == "--table") {
        let rest: Vec<&String> = args[i + 1..]
            .iter()
            .filter(|a| !a.starts_with("--"))
            .collect();
        if rest.len() != 2 {
            usage();
        }
        table(rest[0], rest[1]);
        return;
    }
    let opts = parse_opts(args);
    if opts.url.is_empty() {
        eprintln!("loadgen: no --url; nothing to do (run benches/scale.sh)");
        return;
    }
    run(opts);
}
