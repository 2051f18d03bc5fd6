//! The HTTP side of the signalling server: plain request/response values the routes work
//! on, and the thin tiny_http adapter that turns sockets into them on a small fixed pool of
//! threads. No route logic lives here.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{debug, warn};

use crate::error::{Error, ErrorKind, Result};

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

/// A running HTTP listener: `workers` threads take requests from tiny_http, read the body
/// (at most `max_body` bytes), call `handle` and write the response.
pub(crate) struct HttpListener {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl HttpListener {
    pub fn start(
        addr: SocketAddr,
        workers: usize,
        max_body: usize,
        handle: Arc<dyn Fn(&Request) -> Response + Send + Sync>,
    ) -> Result<HttpListener> {
        let listener = std::net::TcpListener::bind(addr).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot listen for HTTP on {addr}: {e}"),
            )
        })?;
        set_nodelay(&listener);
        let server = tiny_http::Server::from_listener(listener, None).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot listen for HTTP on {addr}: {e}"),
            )
        })?;
        let local_addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| Error::internal("the HTTP listener has no IP address"))?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let (server, stop, handle) = (server.clone(), stop.clone(), handle.clone());
            let t = std::thread::Builder::new()
                .name(format!("swrtc-http-{i}"))
                .spawn(move || worker(&server, &stop, max_body, &*handle))?;
            threads.push(t);
        }
        Ok(HttpListener {
            server,
            stop,
            threads,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the workers (requests in progress finish) and waits for them.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            // A handler that stops its own server must not join itself.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl Drop for HttpListener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long a worker waits for a request before re-checking the stop flag (a fallback:
/// `unblock` normally wakes it at once).
const RECV_POLL: Duration = Duration::from_millis(500);

fn worker(
    server: &tiny_http::Server,
    stop: &AtomicBool,
    max_body: usize,
    handle: &(dyn Fn(&Request) -> Response + Send + Sync),
) {
    while !stop.load(Ordering::Acquire) {
        let mut rq = match server.recv_timeout(RECV_POLL) {
            Ok(Some(rq)) => rq,
            Ok(None) => continue,
            Err(e) => {
                debug!("HTTP receive failed: {e}");
                continue;
            }
        };
        let response = match read_body(&mut rq, max_body) {
            Ok(body) => {
                let mut req = Request::new(rq.method().as_str(), rq.url(), body);
                req.headers = rq
                    .headers()
                    .iter()
                    .map(|h| {
                        (
                            h.field.as_str().as_str().to_owned(),
                            h.value.as_str().to_owned(),
                        )
                    })
                    .collect();
                req.peer_addr = rq.remote_addr().copied();
                // A panicking route must not take a worker down with it.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(&req)))
                    .unwrap_or_else(|_| {
                        warn!("signalling route panicked on {} {}", req.method, req.path);
                        super::routes::with_cors(Response::error(500, "internal error"))
                    })
            }
            Err(r) => super::routes::with_cors(r),
        };
        if let Err(e) = rq.respond(to_tiny(response)) {
            debug!("HTTP response not sent: {e}");
        }
    }
}

/// Disables Nagle on the listener; Linux hands the setting to accepted sockets. tiny_http
/// writes a response's head and body separately, and with Nagle on, the body of a POST
/// that follows a CORS preflight on a kept-alive connection waited ~40 ms for a delayed
/// ACK (measured with Pipecat's JS client, which posts cross-origin).
fn set_nodelay(listener: &std::net::TcpListener) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket fd, a pointer to a c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            debug!("TCP_NODELAY not set: {}", std::io::Error::last_os_error());
        }
    }
    #[cfg(not(unix))]
    let _ = listener;
}

/// Reads at most `max_body` bytes of body; a longer one is a 413 (unread, by its
/// Content-Length when it has one).
fn read_body(rq: &mut tiny_http::Request, max_body: usize) -> Result<Vec<u8>, Response> {
    if rq.body_length().is_some_and(|n| n > max_body) {
        return Err(too_large(max_body));
    }
    let mut body = Vec::with_capacity(rq.body_length().unwrap_or(0).min(max_body));
    rq.as_reader()
        .take(max_body as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Response::error(400, format!("cannot read the request body: {e}")))?;
    if body.len() > max_body {
        return Err(too_large(max_body));
    }
    Ok(body)
}

fn too_large(max_body: usize) -> Response {
    Response::error(413, format!("the request body is over {max_body} bytes"))
}

fn to_tiny(r: Response) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let len = r.body.len();
    let headers = r
        .headers
        .iter()
        .filter_map(|(n, v)| tiny_http::Header::from_bytes(n.as_bytes(), v.as_bytes()).ok())
        .collect();
    tiny_http::Response::new(
        tiny_http::StatusCode(r.status),
        headers,
        std::io::Cursor::new(r.body),
        Some(len),
        None,
    )
    // ESP32 firmware restarts on a chunked reply: always send a Content-Length.
    .with_chunked_threshold(usize::MAX)
}
