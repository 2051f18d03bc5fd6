//! The HTTP values of the signalling server: the request the routes see and the response
//! they give, and how a response goes on the wire (always with a `Content-Length`, never
//! chunked). The sockets live in `server` and `conn`; no route logic lives here.

use std::net::SocketAddr;

/// An HTTP request as the routes see it: the body is already read (and bounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Upper-case method (`GET`, `POST`, `PATCH`, `OPTIONS`, ...).
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The query string (after `?`, without it; empty when there is none).
    pub query: String,
    /// Request headers in arrival order, names as sent (look up with [`Request::header`]).
    pub headers: Vec<(String, String)>,
    /// The address the request came from, when it came over a socket.
    pub peer_addr: Option<SocketAddr>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Request {
    /// A request of `method` on `path` (a query string is dropped) with `body`.
    pub fn new(method: &str, path: &str, body: impl Into<Vec<u8>>) -> Request {
        let target = path.split('#').next().unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: Vec::new(),
            peer_addr: None,
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of the first header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP response: always sent with a `Content-Length`, never chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers besides Content-Length (which the adapter adds from the body).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    /// A JSON `{"error": message}` response.
    pub fn error(status: u16, message: impl AsRef<str>) -> Response {
        Self::json(status, &serde_json::json!({ "error": message.as_ref() }))
    }

    /// A response with a body of `content_type`.
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of header `name` (case-insensitive), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The bytes of `r` on the wire: status line, headers, `Content-Length` (always: ESP32
/// firmware restarts on a chunked reply), `Connection: close` when `close`, and the body
/// unless `head_only` (a `HEAD` request gets the length of the body it would have had).
pub(crate) fn encode(r: &Response, head_only: bool, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + if head_only { 0 } else { r.body.len() });
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status)).as_bytes());
    for (n, v) in &r.headers {
        // Header names and values come from our routes, but a CR or LF in one would split
        // the response: such a header is left out.
        let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n');
        let framing = n.eq_ignore_ascii_case("content-length")
            || n.eq_ignore_ascii_case("transfer-encoding")
            || n.eq_ignore_ascii_case("connection");
        if bad(n) || bad(v) || framing {
            continue;
        }
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n", r.body.len()).as_bytes());
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
