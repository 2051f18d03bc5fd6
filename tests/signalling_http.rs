//! The HTTP adapter on a real socket: Content-Length and never chunked (even for the
//! 15 kB page), 413 before reading an over-large body, CORS on errors, a stalled client
//! does not hold up others, garbage requests leave the server running, stop frees the port.

mod signalling_support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use signalling_support::{post_json, request, synthetic_offer};
use smallwebrtc::signalling::{Server, ServerConfig};

fn server() -> Server {
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        max_body: 64 * 1024,
        ..ServerConfig::default()
    };
    Server::start(cfg, None).unwrap()
}

#[test]
fn responses_have_content_length_and_are_never_chunked() {
    let s = server();
    let page = request(s.local_addr(), "GET", "/", b"");
    assert_eq!(page.status, 200);
    assert!(
        page.body.len() > 8 * 1024,
        "the page is big enough to tempt chunking"
    );
    assert!(!page.chunked);
    assert_eq!(
        page.header("Content-Length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        page.body.len()
    );
    let r = post_json(
        s.local_addr(),
        "/api/offer",
        &json!({"sdp": synthetic_offer(), "type": "offer"}),
    );
    assert_eq!(r.status, 200);
    assert!(!r.chunked && r.header("Content-Length").is_some());
    for (m, p, b) in [
        ("POST", "/api/offer", &b"{"[..]),
        ("GET", "/x", b""),
        ("PUT", "/api/offer", b""),
    ] {
        let r = request(s.local_addr(), m, p, b);
        assert!(r.status >= 400);
        assert!(
            !r.chunked && r.header("Content-Length").is_some(),
            "{m} {p}"
        );
        assert_eq!(
            r.header("Access-Control-Allow-Origin"),
            Some("*"),
            "{m} {p}"
        );
        assert!(r.json()["error"].is_string());
    }
}

#[test]
fn over_large_bodies_get_413_and_the_server_goes_on() {
    let s = server();
    let big = vec![b'x'; 200 * 1024];
    let r = request(s.local_addr(), "POST", "/api/offer", &big);
    assert_eq!(r.status, 413);
    assert!(r.json()["error"].as_str().unwrap().contains("over"));
    // Announced as huge but never sent: refused by its Content-Length alone.
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "POST /api/offer HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut c, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    assert_eq!(request(s.local_addr(), "GET", "/", b"").status, 200);
}

#[test]
fn a_stalled_client_does_not_hold_up_others() {
    let s = server();
    // Sends its head and half a body, then nothing.
    let mut stalled = TcpStream::connect(s.local_addr()).unwrap();
    write!(
        stalled,
        "POST /api/offer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{{\"sdp\":"
    )
    .unwrap();
    let t = Instant::now();
    for _ in 0..5 {
        let r = post_json(
            s.local_addr(),
            "/api/offer",
            &json!({"sdp": synthetic_offer(), "type": "offer"}),
        );
        assert_eq!(r.status, 200);
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(stalled);
}

#[test]
fn garbage_on_the_socket_leaves_the_server_running_and_stop_frees_the_port() {
    let s = server();
    let addr = s.local_addr();
    for junk in [
        &b"\x00\x01\x02\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"POST /api/offer HTTP/9.9\r\n\r\n",
    ] {
        let mut c = TcpStream::connect(addr).unwrap();
        let _ = c.write_all(junk);
    }
    assert_eq!(request(addr, "GET", "/", b"").status, 200);
    s.stop();
    // The port is free again once stop returns (retried briefly in case the kernel lags).
    let end = Instant::now() + Duration::from_secs(3);
    let again = loop {
        match Server::start(
            ServerConfig {
                addr,
                ..ServerConfig::default()
            },
            None,
        ) {
            Ok(s) => break s,
            Err(e) if Instant::now() < end => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the port stays taken: {e}"),
        }
    };
    assert_eq!(again.local_addr(), addr);
}

#[test]
fn keep_alive_pipelining_head_chunked_bodies_and_100_continue() {
    use std::io::Read;
    let s = server();
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Three requests in one write: HEAD of the page, a chunked /start, then a plain GET
    // that closes.
    c.write_all(
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          9\r\n{\"body\": \r\n8\r\n{\"a\":1}}\r\n0\r\n\r\n\
          GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head1, rest) = text.split_once("\r\n\r\n").unwrap();
    assert!(head1.starts_with("HTTP/1.1 200"), "{head1}");
    let page_len = smallwebrtc::signalling::routes::PAGE_HTML.len();
    assert!(
        head1.contains(&format!("Content-Length: {page_len}")),
        "{head1}"
    );
    // No body after a HEAD reply: the next reply follows at once.
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest:.80}");
    let (head2, rest) = rest.split_once("\r\n\r\n").unwrap();
    let len: usize = head2
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&rest[..len]).unwrap();
    assert!(json["sessionId"].is_string(), "{json}");
    let sid = json["sessionId"].as_str().unwrap().to_owned();
    assert!(
        rest[len..].starts_with("HTTP/1.1 404"),
        "{:.80}",
        &rest[len..]
    );
    assert!(rest[len..].contains("Connection: close"));
    // The chunked body became the session's data.
    assert_eq!(s.registry().session_data(&sid), Some(json!({"a": 1})));

    // Expect: 100-continue: the server asks for the body, then answers.
    let body = json!({"sdp": synthetic_offer(), "type": "offer"}).to_string();
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "POST /api/offer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
}
