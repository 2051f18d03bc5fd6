//! One HTTP/1.1 connection of the signalling server as a state machine over a non-blocking
//! socket: read a head (httparse), then a body (by `Content-Length` or chunked), hand the
//! request out, write the response, and start over on keep-alive. At most one request is
//! in flight: the next is read only after the response is written, so a client that
//! pipelines and never reads costs one socket buffer, not a queue. Every phase has a
//! deadline the event loop enforces; every buffer is bounded by the server's limits.

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use super::http::{encode, Request, Response};
use super::routes::with_cors;
use super::server::HttpBounds;

/// What the event loop should do with a connection after driving it.
pub(crate) enum Action {
    /// Blocked on the socket (or a handler): wait for the next event or deadline.
    Wait,
    /// A complete request for a handler thread.
    Dispatch(Request),
    /// Done: drop the connection.
    Close,
}

enum Phase {
    /// Reading a request line and headers. `started`: its first byte has arrived (before
    /// that, the deadline is the idle one).
    Head { started: bool },
    /// Reading the body of `req`.
    Body { req: Request, body: BodyKind },
    /// A handler has the request.
    Handling,
    /// Writing `out` from `out_pos`.
    Writing,
}

enum BodyKind {
    Length(usize),
    Chunked(Chunk),
}

#[derive(Clone, Copy)]
enum Chunk {
    Size,
    Data(usize),
    DataEnd,
    Trailers,
}

/// Longest chunk-size line (with extensions) accepted; longer is a 400.
const MAX_CHUNK_LINE: usize = 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

pub(crate) struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    phase: Phase,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// Whether the request being handled was HEAD (its response goes without body).
    head_only: bool,
    /// Whether the connection closes after the response being written.
    close_after: bool,
    /// When the current phase gives up (`None` while a handler has the request).
    pub deadline: Option<Instant>,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, lim: &HttpBounds, now: Instant) -> Conn {
        Conn {
            stream,
            peer,
            phase: Phase::Head { started: false },
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            head_only: false,
            close_after: false,
            deadline: Some(now + lim.head_timeout),
        }
    }

    /// Whether the connection is between requests (an expired deadline then needs no 408).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head { started: false }) && self.inbuf.is_empty()
    }

    /// Whether a request is being read (an expired deadline gets a best-effort 408).
    pub fn is_reading(&self) -> bool {
        matches!(self.phase, Phase::Head { .. } | Phase::Body { .. })
    }

    /// Sets the response to the request a handler had, and drives the connection on.
    pub fn respond(&mut self, r: &Response, lim: &HttpBounds, now: Instant) -> Action {
        let close = self.close_after;
        self.queue(r, close, now, lim);
        self.drive(lim, now)
    }

    /// Makes all the progress the socket allows.
    pub fn drive(&mut self, lim: &HttpBounds, now: Instant) -> Action {
        loop {
            if self.out_pos < self.out.len() {
                match self.flush() {
                    Ok(true) => {}
                    Ok(false) => return Action::Wait,
                    Err(()) => return Action::Close,
                }
            }
            match &self.phase {
                Phase::Handling => return Action::Wait,
                Phase::Writing => {
                    // Written out (flush above returned true).
                    if self.close_after {
                        let _ = self.stream.shutdown(std::net::Shutdown::Write);
                        return Action::Close;
                    }
                    self.phase = Phase::Head { started: false };
                    self.deadline = Some(now + lim.idle_timeout);
                    continue;
                }
                Phase::Head { .. } | Phase::Body { .. } => {}
            }
            match self.parse(lim, now) {
                Step::Request(req) => {
                    self.phase = Phase::Handling;
                    self.deadline = None;
                    return Action::Dispatch(req);
                }
                Step::Respond(r) => {
                    self.queue(&with_cors(r), true, now, lim);
                    continue;
                }
                Step::Progress => continue,
                Step::Need => {}
            }
            if self.inbuf.len() >= lim.max_head_bytes + lim.max_body + READ_CHUNK {
                // Cannot happen within the limits parse enforces; a last fence for memory.
                return Action::Close;
            }
            let mut chunk = [0u8; READ_CHUNK];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Action::Close,
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == IoKind::WouldBlock => return Action::Wait,
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(_) => return Action::Close,
            }
        }
    }

    /// A best-effort last response (a 408 when a deadline expires, a 503 at a cap): one
    /// non-blocking write, then the caller drops the connection.
    pub fn last_words(&mut self, r: &Response) {
        let bytes = encode(&with_cors(r.clone()), false, true);
        let _ = self.stream.write(&bytes);
    }

    fn queue(&mut self, r: &Response, close: bool, now: Instant, lim: &HttpBounds) {
        self.out = encode(r, self.head_only, close);
        self.out_pos = 0;
        self.close_after = close;
        self.head_only = false;
        self.phase = Phase::Writing;
        self.deadline = Some(now + lim.write_timeout);
    }

    /// Writes what it can of `out`: `Ok(true)` when all is written.
    fn flush(&mut self) -> Result<bool, ()> {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == IoKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
        self.out = Vec::new();
        self.out_pos = 0;
        Ok(true)
    }

    fn parse(&mut self, lim: &HttpBounds, now: Instant) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Handling) {
            Phase::Head { started } => {
                if !started && !self.inbuf.is_empty() {
                    self.deadline = Some(now + lim.head_timeout);
                }
                let started = started || !self.inbuf.is_empty();
                self.phase = Phase::Head { started };
                self.parse_head(lim, now)
            }
            Phase::Body { req, body } => self.parse_body(req, body, lim),
            other => {
                self.phase = other;
                Step::Need
            }
        }
    }

    fn parse_head(&mut self, lim: &HttpBounds, now: Instant) -> Step {
        // Stray CRLFs between requests are allowed (RFC 9112 §2.2).
        let blank = self.inbuf.iter().take_while(|b| matches!(b, b'\r' | b'\n'));
        let skip = blank.count();
        if skip > 0 {
            self.inbuf.drain(..skip);
        }
        let mut headers = vec![httparse::EMPTY_HEADER; lim.max_headers];
        let mut parsed = httparse::Request::new(&mut headers);
        let used = match parsed.parse(&self.inbuf) {
            Ok(httparse::Status::Complete(n)) if n > lim.max_head_bytes => {
                return Step::Respond(too_large_head(lim))
            }
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.inbuf.len() > lim.max_head_bytes => {
                return Step::Respond(too_large_head(lim))
            }
            Ok(httparse::Status::Partial) => return Step::Need,
            Err(httparse::Error::TooManyHeaders) => {
                return Step::Respond(Response::error(
                    431,
                    format!("more than {} request headers", lim.max_headers),
                ))
            }
            Err(e) => return Step::Respond(Response::error(400, format!("bad request: {e}"))),
        };
        let method = parsed.method.unwrap_or("GET");
        let target = parsed.path.unwrap_or("/");
        let version = parsed.version.unwrap_or(1);
        let mut req = Request::new(method, target, Vec::new());
        let mut text_headers = Vec::with_capacity(parsed.headers.len());
        for h in parsed.headers.iter() {
            let Ok(v) = std::str::from_utf8(h.value) else {
                return Step::Respond(Response::error(
                    400,
                    format!("header {} is not UTF-8", h.name),
                ));
            };
            text_headers.push((h.name.to_owned(), v.trim().to_owned()));
        }
        req.headers = text_headers;
        req.peer_addr = Some(self.peer);
        self.inbuf.drain(..used);

        let connection = req.header("Connection").unwrap_or("").to_ascii_lowercase();
        self.close_after = if version == 0 {
            !connection.contains("keep-alive")
        } else {
            connection.contains("close")
        };
        self.head_only = req.method == "HEAD";

        let body = match body_kind(&req, lim) {
            Ok(b) => b,
            Err(r) => return Step::Respond(r),
        };
        let expect = req.header("Expect").map(str::to_ascii_lowercase);
        match (expect.as_deref(), &body) {
            (None, _) => {}
            (Some("100-continue"), BodyKind::Length(0)) => {}
            (Some("100-continue"), _) if version >= 1 => {
                // The body is within the limits (checked above): ask for it.
                self.out = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
                self.out_pos = 0;
            }
            (Some("100-continue"), _) => {}
            (Some(other), _) => {
                return Step::Respond(Response::error(417, format!("cannot meet Expect: {other}")))
            }
        }
        self.deadline = Some(now + lim.body_timeout);
        self.phase = Phase::Body { req, body };
        Step::Progress
    }

    fn parse_body(&mut self, mut req: Request, mut kind: BodyKind, lim: &HttpBounds) -> Step {
        let step = match &mut kind {
            BodyKind::Length(n) => {
                if self.inbuf.len() >= *n {
                    req.body = self.inbuf.drain(..*n).collect();
                    return Step::Request(req);
                }
                Step::Need
            }
            BodyKind::Chunked(state) => loop {
                match decode_chunk(state, &mut self.inbuf, &mut req.body, lim) {
                    Ok(Some(true)) => return Step::Request(req),
                    Ok(Some(false)) => continue,
                    Ok(None) => break Step::Need,
                    Err(r) => return Step::Respond(r),
                }
            },
        };
        self.phase = Phase::Body { req, body: kind };
        step
    }
}

enum Step {
    /// More bytes are needed.
    Need,
    /// The phase moved on; parse again.
    Progress,
    /// A complete request.
    Request(Request),
    /// Answer this and close (the stream is no longer in a known state).
    Respond(Response),
}

fn too_large_head(lim: &HttpBounds) -> Response {
    Response::error(
        431,
        format!(
            "the request line and headers are over {} bytes",
            lim.max_head_bytes
        ),
    )
}

fn body_kind(req: &Request, lim: &HttpBounds) -> Result<BodyKind, Response> {
    let chunked = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .collect::<Vec<_>>();
    let lengths: Vec<&str> = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_str())
        .collect();
    if !chunked.is_empty() {
        // Both framings at once is how requests are smuggled: refuse (RFC 9112 §6.3).
        if !lengths.is_empty() {
            return Err(Response::error(
                400,
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if chunked.len() != 1 || chunked[0].trim() != "chunked" {
            return Err(Response::error(
                501,
                "only the chunked transfer coding is supported",
            ));
        }
        return Ok(BodyKind::Chunked(Chunk::Size));
    }
    let Some(first) = lengths.first() else {
        return Ok(BodyKind::Length(0));
    };
    if lengths.iter().any(|l| l != first) {
        return Err(Response::error(400, "conflicting Content-Length headers"));
    }
    let n: usize = first
        .trim()
        .parse()
        .map_err(|_| Response::error(400, format!("bad Content-Length {first:?}")))?;
    if n > lim.max_body {
        return Err(body_too_large(lim));
    }
    Ok(BodyKind::Length(n))
}

fn body_too_large(lim: &HttpBounds) -> Response {
    Response::error(
        413,
        format!("the request body is over {} bytes", lim.max_body),
    )
}

/// One step of a chunked body: `Ok(Some(true))` done, `Ok(Some(false))` progress,
/// `Ok(None)` needs bytes.
fn decode_chunk(
    state: &mut Chunk,
    inbuf: &mut Vec<u8>,
    body: &mut Vec<u8>,
    lim: &HttpBounds,
) -> Result<Option<bool>, Response> {
    match *state {
        Chunk::Size => match httparse::parse_chunk_size(inbuf) {
            Ok(httparse::Status::Complete((used, size))) => {
                inbuf.drain(..used);
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > lim.max_body.saturating_sub(body.len()) {
                    return Err(body_too_large(lim));
                }
                *state = if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                };
                Ok(Some(false))
            }
            Ok(httparse::Status::Partial) if inbuf.len() > MAX_CHUNK_LINE => {
                Err(Response::error(400, "chunk size line too long"))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(_) => Err(Response::error(400, "bad chunk size")),
        },
        Chunk::Data(left) => {
            if inbuf.is_empty() {
                return Ok(None);
            }
            let n = left.min(inbuf.len());
            body.extend(inbuf.drain(..n));
            *state = if n == left {
                Chunk::DataEnd
            } else {
                Chunk::Data(left - n)
            };
            Ok(Some(false))
        }
        Chunk::DataEnd => {
            if inbuf.len() < 2 {
                return Ok(None);
            }
            if &inbuf[..2] != b"\r\n" {
                return Err(Response::error(400, "chunk data not followed by CRLF"));
            }
            inbuf.drain(..2);
            *state = Chunk::Size;
            Ok(Some(false))
        }
        Chunk::Trailers => {
            let mut trailers = vec![httparse::EMPTY_HEADER; lim.max_headers];
            match httparse::parse_headers(inbuf, &mut trailers) {
                Ok(httparse::Status::Complete((used, _))) => {
                    inbuf.drain(..used);
                    Ok(Some(true))
                }
                Ok(httparse::Status::Partial) if inbuf.len() > lim.max_head_bytes => {
                    Err(too_large_head(lim))
                }
                Ok(httparse::Status::Partial) => Ok(None),
                Err(_) => Err(Response::error(400, "bad chunked trailers")),
            }
        }
    }
}
