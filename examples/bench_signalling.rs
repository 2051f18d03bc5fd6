//! Benchmark: POST /api/offer → answer on loopback, median of 10 (target ≤ 5 ms), for new
//! peers and for renegotiations. Uses a browser-like offer (audio, video, data channel);
//! the HTTP client is a plain TcpStream, one connection per request like `fetch`.
//!
//!     cargo run --release --example bench_signalling

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use smallwebrtc::signalling::{Server, ServerConfig};

const RUNS: usize = 10;

fn main() {
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let server = Server::start(cfg, None).expect("server starts");
    let addr = server.local_addr();
    // Warm up: the runtime, its certificate and the first socket.
    let warm = post(addr, &body(None));
    let warm_id = warm["pc_id"].as_str().unwrap().to_owned();
    let keep = server.accept(Some(Duration::from_secs(1))).unwrap();

    let mut fresh = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let a = post(addr, &body(None));
        fresh.push(t.elapsed());
        assert_eq!(a["type"], "answer");
        drop(server.accept(Some(Duration::from_secs(1))));
    }
    let mut reneg = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let a = post(addr, &body(Some(&warm_id)));
        reneg.push(t.elapsed());
        assert_eq!(a["pc_id"], warm_id.as_str());
    }
    drop(keep);
    println!(
        "POST /api/offer → answer, new peer:      median {:.2} ms (min {:.2}, max {:.2})",
        ms(median(&mut fresh)),
        ms(fresh[0]),
        ms(fresh[RUNS - 1])
    );
    println!(
        "POST /api/offer → answer, renegotiation: median {:.2} ms (min {:.2}, max {:.2})",
        ms(median(&mut reneg)),
        ms(reneg[0]),
        ms(reneg[RUNS - 1])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
}

fn body(pc_id: Option<&str>) -> String {
    json!({"sdp": offer(), "type": "offer", "pc_id": pc_id, "restart_pc": false}).to_string()
}

fn post(addr: SocketAddr, body: &str) -> Value {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    write!(
        s,
        "POST /api/offer HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    serde_json::from_slice(&raw[split + 4..]).unwrap()
}

/// A browser-like offer: Opus, VP8 and H.264 on audio/video lines and a data channel.
fn offer() -> String {
    let fp = (0..32)
        .map(|i| format!("{i:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let common = format!(
        "c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n\
         a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=ice-options:trickle\r\n\
         a=fingerprint:sha-256 {fp}\r\na=setup:actpass\r\n"
    );
    format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1 2 3\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n{common}a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\na=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:1001 cname:abc\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\n{common}a=mid:1\r\na=sendrecv\r\na=rtcp-mux\r\n\
a=rtcp-rsize\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=ssrc:2001 cname:abc\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n{common}a=mid:2\r\na=sendonly\r\na=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=ssrc:3001 cname:abc\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n{common}a=mid:3\r\na=sctp-port:5000\r\n\
a=max-message-size:262144\r\n"
    )
}
