//! The sans-IO half of an HTTP/1.1 connection: bytes in, requests out. Parses a request
//! line and headers (httparse), then a body by `Content-Length` or chunked, within the
//! server's bounds; says when a head is complete (so the connection can start the body
//! deadline and answer `Expect: 100-continue`) and when the stream must be answered and
//! closed. No sockets, no clock.

use super::http::{Request, Response};
use super::server::HttpBounds;

/// What the parser has for the connection.
pub(crate) enum Parsed {
    /// More bytes are needed.
    Need,
    /// A head is complete and its body follows; `continue_100`: the client waits for a
    /// `100 Continue` before sending it.
    HeadDone { continue_100: bool },
    /// A complete request. `close`: the connection closes after its reply; `head_only`:
    /// the reply goes without its body (HEAD).
    Request {
        req: Request,
        close: bool,
        head_only: bool,
    },
    /// Answer this and close: the stream is no longer in a known state.
    Respond(Response),
}

enum Phase {
    Head,
    Body {
        req: Request,
        body: BodyKind,
        close: bool,
    },
    /// A `Respond` was returned: nothing more is parsed.
    Done,
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

/// Requests parsed from the bytes of one connection, one after another.
pub(crate) struct RequestParser {
    phase: Phase,
    inbuf: Vec<u8>,
}

impl RequestParser {
    pub fn new() -> RequestParser {
        RequestParser {
            phase: Phase::Head,
            inbuf: Vec::new(),
        }
    }

    /// Bytes from the client.
    pub fn push(&mut self, bytes: &[u8]) {
        self.inbuf.extend_from_slice(bytes);
    }

    /// Bytes held and not yet parsed.
    pub fn buffered(&self) -> usize {
        self.inbuf.len()
    }

    /// Whether the next `poll` can only return `Need` until more bytes come, and no byte
    /// of a request is held (the connection is between requests).
    pub fn is_between_requests(&self) -> bool {
        matches!(self.phase, Phase::Head) && self.inbuf.is_empty()
    }

    /// The next thing the bytes held make.
    pub fn poll(&mut self, lim: &HttpBounds) -> Parsed {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Head => self.parse_head(lim),
            Phase::Body { req, body, close } => self.parse_body(req, body, close, lim),
            Phase::Done => Parsed::Need,
        }
    }

    fn parse_head(&mut self, lim: &HttpBounds) -> Parsed {
        // Stray CRLFs between requests are allowed (RFC 9112 §2.2).
        let skip = self
            .inbuf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if skip > 0 {
            self.inbuf.drain(..skip);
        }
        let mut headers = vec![httparse::EMPTY_HEADER; lim.limits.max_headers];
        let mut parsed = httparse::Request::new(&mut headers);
        let used = match parsed.parse(&self.inbuf) {
            Ok(httparse::Status::Complete(n)) if n > lim.limits.max_head_bytes => {
                return Parsed::Respond(too_large_head(lim))
            }
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.inbuf.len() > lim.limits.max_head_bytes => {
                return Parsed::Respond(too_large_head(lim))
            }
            Ok(httparse::Status::Partial) => {
                self.phase = Phase::Head;
                return Parsed::Need;
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Parsed::Respond(Response::error(
                    431,
                    format!("more than {} request headers", lim.limits.max_headers),
                ))
            }
            Err(e) => return Parsed::Respond(Response::error(400, format!("bad request: {e}"))),
        };
        let version = parsed.version.unwrap_or(1);
        let mut req = Request::new(
            parsed.method.unwrap_or("GET"),
            parsed.path.unwrap_or("/"),
            Vec::new(),
        );
        for h in parsed.headers.iter() {
            let Ok(v) = std::str::from_utf8(h.value) else {
                return Parsed::Respond(Response::error(
                    400,
                    format!("header {} is not UTF-8", h.name),
                ));
            };
            req.headers.push((h.name.to_owned(), v.trim().to_owned()));
        }
        self.inbuf.drain(..used);

        let connection = req.header("Connection").unwrap_or("").to_ascii_lowercase();
        let close = if version == 0 {
            !connection.contains("keep-alive")
        } else {
            connection.contains("close")
        };
        let body = match body_kind(&req, lim) {
            Ok(b) => b,
            Err(r) => return Parsed::Respond(r),
        };
        let continue_100 = match req.header("Expect").map(str::to_ascii_lowercase) {
            None => false,
            // The body is within the limits (checked above): ask for it (HTTP/1.1 only).
            Some(e) if e == "100-continue" => version >= 1 && !matches!(body, BodyKind::Length(0)),
            Some(other) => {
                return Parsed::Respond(Response::error(
                    417,
                    format!("cannot meet Expect: {other}"),
                ))
            }
        };
        self.phase = Phase::Body { req, body, close };
        Parsed::HeadDone { continue_100 }
    }

    fn parse_body(
        &mut self,
        mut req: Request,
        mut kind: BodyKind,
        close: bool,
        lim: &HttpBounds,
    ) -> Parsed {
        let done = match &mut kind {
            BodyKind::Length(n) => {
                let done = self.inbuf.len() >= *n;
                if done {
                    req.body = self.inbuf.drain(..*n).collect();
                }
                done
            }
            BodyKind::Chunked(state) => loop {
                match decode_chunk(state, &mut self.inbuf, &mut req.body, lim) {
                    Ok(Some(true)) => break true,
                    Ok(Some(false)) => continue,
                    Ok(None) => break false,
                    Err(r) => return Parsed::Respond(r),
                }
            },
        };
        if done {
            self.phase = Phase::Head;
            let head_only = req.method == "HEAD";
            return Parsed::Request {
                req,
                close,
                head_only,
            };
        }
        self.phase = Phase::Body {
            req,
            body: kind,
            close,
        };
        Parsed::Need
    }
}

fn too_large_head(lim: &HttpBounds) -> Response {
    Response::error(
        431,
        format!(
            "the request line and headers are over {} bytes",
            lim.limits.max_head_bytes
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
            let mut trailers = vec![httparse::EMPTY_HEADER; lim.limits.max_headers];
            match httparse::parse_headers(inbuf, &mut trailers) {
                Ok(httparse::Status::Complete((used, _))) => {
                    inbuf.drain(..used);
                    Ok(Some(true))
                }
                Ok(httparse::Status::Partial) if inbuf.len() > lim.limits.max_head_bytes => {
                    Err(too_large_head(lim))
                }
                Ok(httparse::Status::Partial) => Ok(None),
                Err(_) => Err(Response::error(400, "bad chunked trailers")),
            }
        }
    }
}

/// Feeds `data` to a parser the way a connection would, in pieces of the size its first
/// byte says, and checks what must hold for any input: no panic, bodies within the limit,
/// the bytes held bounded, errors are 4xx/5xx. For the fuzz target and its regression test.
pub(crate) fn check_any_input(data: &[u8]) {
    let limits = super::server::ServerLimits {
        max_headers: 16,
        max_head_bytes: 2048,
        ..Default::default()
    };
    let lim = HttpBounds::new(&limits, 4096);
    let (split, data) = match data.split_first() {
        Some((b, rest)) => (usize::from(*b).max(1), rest),
        None => (1, data),
    };
    let mut p = RequestParser::new();
    for piece in data.chunks(split) {
        p.push(piece);
        loop {
            match p.poll(&lim) {
                Parsed::Need => break,
                Parsed::HeadDone { .. } => {}
                Parsed::Request { req, .. } => assert!(req.body.len() <= lim.max_body),
                Parsed::Respond(r) => {
                    assert!(r.status >= 400, "{}", r.status);
                    return;
                }
            }
        }
        assert!(
            p.buffered() <= lim.limits.max_head_bytes + lim.max_body,
            "{} bytes held",
            p.buffered()
        );
    }
}
