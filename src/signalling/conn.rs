//! One HTTP/1.1 connection of the signalling server over a non-blocking socket: feeds
//! what it reads to the [`RequestParser`], hands complete requests out, writes responses,
//! and starts over on keep-alive. At most one request is in flight: the next is read only
//! after the response is written, so a client that pipelines and never reads costs one
//! socket buffer, not a queue. Every stage has a deadline the event loop enforces.

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use super::http::{encode, Request, Response};
use super::parse::{Parsed, RequestParser};
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

enum Stage {
    /// Reading a request. `started`: a byte of it has arrived (before that, the deadline
    /// is the idle one).
    Reading { started: bool },
    /// A handler has the request.
    Handling,
    /// Writing a response.
    Writing,
}

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

pub(crate) struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    stage: Stage,
    parser: RequestParser,
    out: Vec<u8>,
    out_pos: usize,
    /// Whether the request being handled was HEAD (its response goes without body).
    head_only: bool,
    /// Whether the connection closes after the response being written.
    close_after: bool,
    /// When the current stage gives up (`None` while a handler has the request).
    pub deadline: Option<Instant>,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, lim: &HttpBounds, now: Instant) -> Conn {
        Conn {
            stream,
            peer,
            stage: Stage::Reading { started: false },
            parser: RequestParser::new(),
            out: Vec::new(),
            out_pos: 0,
            head_only: false,
            close_after: false,
            deadline: Some(now + lim.limits.head_timeout),
        }
    }

    /// Whether the connection is between requests (an expired deadline then needs no 408).
    pub fn is_idle(&self) -> bool {
        matches!(self.stage, Stage::Reading { started: false }) && self.parser.buffered() == 0
    }

    /// Whether a request is being read (an expired deadline gets a best-effort 408).
    pub fn is_reading(&self) -> bool {
        matches!(self.stage, Stage::Reading { .. })
    }

    /// Sets the response to the request a handler had, and drives the connection on.
    pub fn respond(&mut self, r: &Response, lim: &HttpBounds, now: Instant) -> Action {
        self.queue(r, self.close_after, now, lim);
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
            let started = match self.stage {
                Stage::Handling => return Action::Wait,
                Stage::Writing => {
                    // Written out (flush above returned true).
                    if self.close_after {
                        let _ = self.stream.shutdown(std::net::Shutdown::Write);
                        return Action::Close;
                    }
                    self.stage = Stage::Reading { started: false };
                    self.deadline = Some(now + lim.limits.idle_timeout);
                    continue;
                }
                Stage::Reading { started } => started,
            };
            if !started && !self.parser.is_between_requests() {
                self.stage = Stage::Reading { started: true };
                self.deadline = Some(now + lim.limits.head_timeout);
            }
            match self.parser.poll(lim) {
                Parsed::Request {
                    mut req,
                    close,
                    head_only,
                } => {
                    req.peer_addr = Some(self.peer);
                    self.close_after = close;
                    self.head_only = head_only;
                    self.stage = Stage::Handling;
                    self.deadline = None;
                    return Action::Dispatch(req);
                }
                Parsed::Respond(r) => {
                    self.queue(&with_cors(r), true, now, lim);
                    continue;
                }
                Parsed::HeadDone { continue_100 } => {
                    self.deadline = Some(now + lim.limits.body_timeout);
                    if continue_100 {
                        self.out = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
                        self.out_pos = 0;
                    }
                    continue;
                }
                Parsed::Need => {}
            }
            if self.parser.buffered() >= lim.limits.max_head_bytes + lim.max_body + READ_CHUNK {
                // Cannot happen within the limits the parser enforces; a last fence.
                return Action::Close;
            }
            let mut chunk = [0u8; READ_CHUNK];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Action::Close,
                Ok(n) => self.parser.push(&chunk[..n]),
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
        self.stage = Stage::Writing;
        self.deadline = Some(now + lim.limits.write_timeout);
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
}
