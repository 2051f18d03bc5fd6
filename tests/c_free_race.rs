//! The C deletion rule without exceptions: `tests/c/free_race.c`, built with
//! AddressSanitizer and UBSan, frees each peer the server hands it at a random moment and
//! frees the callbacks' user_data right after, while the peer's str0m client keeps sending
//! messages and audio, PATCHes candidates, re-posts its offer and renegotiates over HTTP (so the server holds
//! the peer in a request when the free lands). No callback may run after a free returns:
//! the program counts them (and ASan aborts on the freed block), and exits cleanly.

mod c_bots;
mod common;
mod signalling_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use c_bots::{assert_clean, Bot};
use common::c_build::{build_lib, compile, local_flags, SANITIZE};
use common::str0m_client::{ClientOptions, TestClient};
use serde_json::{json, Value};
use signalling_support::post_json;
use smallwebrtc::media::audio::OpusEncoder;

const T: Duration = Duration::from_secs(30);
const PEERS: usize = 12;

/// One request on a fresh connection; the status and body, or `None` if the server is gone
/// (the bot exits as soon as it has freed its last peer).
fn try_request(addr: SocketAddr, method: &str, body: &Value) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(T)).ok()?;
    let body = body.to_string();
    let head = format!(
        "{method} /api/offer HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let line = String::from_utf8_lossy(&raw[..raw.len().min(16)]).into_owned();
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let body_at = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some((status, raw[body_at..].to_vec()))
}

/// Requests in flight against one peer until `stop` or it is gone: PATCHes of candidates
/// (8 at a time, all valid, so each one reaches the peer) alternating with re-posts of its
/// offer as a renegotiation (each one held by the server while the peer answers it).
fn request_loop(
    addr: SocketAddr,
    pc_id: String,
    offer: String,
    stop: Arc<AtomicBool>,
    n: Arc<AtomicU64>,
) {
    let mut port = 40_000u32;
    while !stop.load(Ordering::Relaxed) {
        let candidates: Vec<Value> = (0..8)
            .map(|_| {
                port += 1;
                json!({"candidate": format!(
                    "candidate:{port} 1 udp 2122260223 127.0.0.1 {} typ host", 1024 + port % 60_000),
                    "sdp_mid": "0", "sdp_mline_index": 0})
            })
            .collect();
        let patch = json!({"pc_id": pc_id, "candidates": candidates});
        let again = json!({"sdp": offer, "type": "offer", "pc_id": pc_id});
        for (method, body) in [("PATCH", &patch), ("POST", &again)] {
            match try_request(addr, method, body).map(|r| r.0) {
                Some(404) | None => return, // freed, or the bot is done
                Some(_) => {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[test]
fn no_callback_runs_after_swrtc_peer_free_while_requests_are_in_flight() {
    build_lib();
    let dir = std::env::temp_dir().join(format!("swrtc-free-race-{}", std::process::id()));
    let exe = dir.join("free_race");
    let mut flags = local_flags();
    flags.extend(SANITIZE.iter().map(|f| f.to_string()));
    flags.push("-lpthread".into());
    compile("tests/c/free_race.c", &exe, &flags);
    let mut cmd = Command::new(&exe);
    cmd.args(["127.0.0.1:0", &PEERS.to_string()])
        .env("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1:exitcode=66")
        .env(
            "UBSAN_OPTIONS",
            "print_stacktrace=1:halt_on_error=1:exitcode=67",
        );
    let bot = Bot::spawn("free_race", cmd, T);

    let (mut patches, mut renegotiations) = (0, 0);
    for i in 0..PEERS {
        let mut client = TestClient::new(ClientOptions::default());
        let offer = client.offer();
        let r = post_json(
            bot.addr,
            "/api/offer",
            &json!({"sdp": offer, "type": "offer"}),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let answer = r.json();
        client
            .accept_answer(answer["sdp"].as_str().unwrap())
            .unwrap();
        let pc_id = answer["pc_id"].as_str().unwrap().to_string();

        let stop = Arc::new(AtomicBool::new(false));
        let n_patch = Arc::new(AtomicU64::new(0));
        let patcher = {
            let (pc, s, n) = (pc_id.clone(), stop.clone(), n_patch.clone());
            let (addr, offer) = (bot.addr, offer.clone());
            thread::spawn(move || request_loop(addr, pc, offer, s, n))
        };
        // Audio, messages and renegotiations from this thread until the bot frees the peer.
        let freed = format!("freed {i} ");
        thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                bot.wait_line(T, &freed);
                stop.store(true, Ordering::Relaxed);
            });
            let mut enc = OpusEncoder::new(48_000, 1, 32_000, 5, false).unwrap();
            let mut out = vec![0u8; 4000];
            let start = Instant::now();
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) && start.elapsed() < T {
                let pcm = common::str0m_client::tone(440.0, k * 960, 960, 48_000);
                let len = enc.encode(&pcm, &mut out).unwrap();
                client.send_opus(out[..len].to_vec(), k * 960);
                client.send_text(&format!("m{k}"));
                if k % 5 == 4 {
                    let re = client.renegotiate();
                    let again = json!({"sdp": re, "type": "offer", "pc_id": pc_id});
                    // Not answered once the peer is freed; the bot may even be gone.
                    if let Some((200, body)) = try_request(bot.addr, "POST", &again) {
                        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let _ = client.accept_answer(answer["sdp"].as_str().unwrap_or(""));
                        renegotiations += 1;
                    }
                }
                k += 1;
                thread::sleep(Duration::from_millis(20));
            }
            waiter.join().expect("the bot frees the peer");
        });
        patcher.join().unwrap();
        patches += n_patch.load(Ordering::Relaxed);
        client.close();
    }
    let done = bot.wait_line(T, "done ");
    eprintln!(
        "{PEERS} peers; {patches} requests in flight, {renegotiations} renegotiations; {done}"
    );
    assert!(done.ends_with("after_free=0"), "{done}");
    let calls: u64 = done
        .split("callbacks=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        calls > PEERS as u64 * 10,
        "the callbacks hardly ran: {done}"
    );
    assert!(patches > PEERS as u64 && renegotiations > 0);
    let (status, stderr) = bot.wait_exit(T);
    assert_clean("free_race", status, &stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
