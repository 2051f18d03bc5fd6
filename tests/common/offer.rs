//! `POST /api/offer` as a Pipecat client does it, over a plain TcpStream (one request per
//! connection, read to EOF).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

/// POSTs `{"sdp": offer, "type": "offer"}` to `server`; the JSON answer (`sdp`, `type`,
/// `pc_id`). Panics unless the server answers 200 with JSON.
pub fn post_offer(server: SocketAddr, offer: &str) -> Value {
    let body = json!({"sdp": offer, "type": "offer"}).to_string();
    let mut s = TcpStream::connect(server).expect("connect to the server");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    let req = format!(
        "POST /api/offer HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8_lossy(&raw);
    let (head, json) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "offer refused: {head}");
    serde_json::from_str(json).expect("a JSON answer")
}
