//! The signalling server's HTTP/1.1 listener: one mio event loop thread owns the listening
//! socket and every connection (no thread per connection; an idle one costs an fd and a
//! few hundred bytes), and a small pool of handler threads runs the routes, fed by a
//! bounded channel, so a slow handler (an offer takes milliseconds, `on_peer` runs app
//! code) never blocks another connection's I/O. Connection caps overall and per source
//! address, per-phase deadlines, and an accept loop that backs off on `EMFILE`/`ENFILE`
//! instead of dying keep any client from stopping it.

use std::collections::HashMap;
use std::io::ErrorKind as IoKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, warn};

use super::conn::{Action, Conn};
use super::http::{Request, Response};
use crate::error::{Error, ErrorKind, Result};
use crate::limits;

/// The HTTP and peer bounds of a signalling server. Each field's doc gives its default;
/// past a bound a client gets the status the field names (400, 413, 431 or 503 with
/// `Retry-After`), and the server keeps serving everyone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Wait for a request line and headers from their first byte. Default 5 s.
    pub head_timeout: Duration,
    /// Wait for a body once its head is in. Default 5 s.
    pub body_timeout: Duration,
    /// A kept-alive connection with no request this long is closed. Default 15 s.
    pub idle_timeout: Duration,
    /// A response not taken by the client within this drops the connection. Default 5 s.
    pub write_timeout: Duration,
    /// Headers per request; more get 431. Default 64.
    pub max_headers: usize,
    /// Bytes of request line plus headers; more get 431. Default 16 KiB.
    pub max_head_bytes: usize,
    /// Open connections; past it new ones get 503 and are closed. Default 256.
    pub max_connections: usize,
    /// Open connections from one source address. Default 32.
    pub max_connections_per_source: usize,
    /// Media sections per offer; more get 400. Default 8.
    pub max_offer_m_lines: usize,
    /// Remote candidates added to one peer; a PATCH past it gets 400. Default 64.
    pub max_remote_candidates: usize,
    /// Live peers (connecting or connected); past it offers get 503. Default 256.
    pub max_peers: usize,
    /// Live peers from one source address. Default 32.
    pub max_peers_per_source: usize,
    /// Peers not yet connected; past it offers get 503. Default 64.
    pub max_connecting_peers: usize,
    /// Not-yet-connected peers from one source address. Default 8.
    pub max_connecting_peers_per_source: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            head_timeout: limits::HTTP_HEAD_TIMEOUT,
            body_timeout: limits::HTTP_BODY_TIMEOUT,
            idle_timeout: limits::HTTP_IDLE_TIMEOUT,
            write_timeout: limits::HTTP_WRITE_TIMEOUT,
            max_headers: limits::HTTP_MAX_HEADERS,
            max_head_bytes: limits::HTTP_MAX_HEAD_BYTES,
            max_connections: limits::HTTP_MAX_CONNECTIONS,
            max_connections_per_source: limits::HTTP_MAX_CONNECTIONS_PER_SOURCE,
            max_offer_m_lines: limits::MAX_OFFER_M_LINES,
            max_remote_candidates: limits::MAX_REMOTE_CANDIDATES,
            max_peers: limits::MAX_PEERS,
            max_peers_per_source: limits::MAX_PEERS_PER_SOURCE,
            max_connecting_peers: limits::MAX_CONNECTING_PEERS,
            max_connecting_peers_per_source: limits::MAX_CONNECTING_PEERS_PER_SOURCE,
        }
    }
}

impl ServerLimits {
    /// Checks every bound is usable (counts and timeouts above zero, at most 1024 headers).
    /// A per-source cap above its overall cap is allowed and acts as the overall one.
    pub fn validate(&self) -> Result<()> {
        let counts = [
            ("max_headers", self.max_headers),
            ("max_head_bytes", self.max_head_bytes),
            ("max_connections", self.max_connections),
            (
                "max_connections_per_source",
                self.max_connections_per_source,
            ),
            ("max_offer_m_lines", self.max_offer_m_lines),
            ("max_remote_candidates", self.max_remote_candidates),
            ("max_peers", self.max_peers),
            ("max_peers_per_source", self.max_peers_per_source),
            ("max_connecting_peers", self.max_connecting_peers),
            (
                "max_connecting_peers_per_source",
                self.max_connecting_peers_per_source,
            ),
        ];
        for (name, v) in counts {
            if v == 0 {
                return Err(Error::invalid(format!("{name} must be above zero")));
            }
        }
        for (name, d) in [
            ("head_timeout", self.head_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::invalid(format!("{name} must be above zero")));
            }
        }
        if self.max_headers > 1024 {
            return Err(Error::invalid("max_headers must be at most 1024"));
        }
        Ok(())
    }
}

/// What the connections obey: the server's [`ServerLimits`] and the body limit, which
/// predates them and stays in `ServerConfig::max_body`.
#[derive(Debug, Clone)]
pub(crate) struct HttpBounds {
    pub limits: ServerLimits,
    pub max_body: usize,
}

impl HttpBounds {
    pub fn new(limits: &ServerLimits, max_body: usize) -> HttpBounds {
        HttpBounds {
            limits: limits.clone(),
            max_body,
        }
    }
}

/// Counters of the HTTP listener (for logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Connections taken in.
    pub accepted: u64,
    /// Connections refused with 503 at a connection cap.
    pub refused: u64,
    /// `accept` failures for want of fds (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`); the
    /// loop backed off and kept listening.
    pub accept_errors: u64,
    /// Connections closed at a deadline (head, body, idle or write).
    pub timed_out: u64,
    /// Idle connections closed to make room for a new one (at the connection cap or out
    /// of fds).
    pub evicted: u64,
    /// Requests answered 503 because every handler thread was busy and the queue full.
    pub queue_full: u64,
    /// Connections open now.
    pub open: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    accept_errors: AtomicU64,
    timed_out: AtomicU64,
    evicted: AtomicU64,
    queue_full: AtomicU64,
    open: AtomicU64,
}

/// A route handler: any thread of the pool, never the event loop.
pub(crate) type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Idle connections shed when `accept` runs out of fds: one for the new connection and a
/// few for what its request opens (a peer's sockets).
const EMFILE_SHED: usize = 4;
/// After running out of fds, connections stay capped below that point this long.
const FD_CAP_HOLD: Duration = Duration::from_secs(10);
/// The loop wakes at least this often (deadlines are checked to this precision).
const TICK: Duration = Duration::from_millis(100);

struct Job {
    token: Token,
    req: Request,
}

/// A running listener: the event loop thread and the handler threads.
pub(crate) struct HttpServer {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    event_loop: Option<JoinHandle<()>>,
    handlers: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
    local_addr: SocketAddr,
}

impl HttpServer {
    pub fn start(
        addr: SocketAddr,
        threads: usize,
        lim: HttpBounds,
        handle: Handler,
    ) -> Result<HttpServer> {
        let io = |e: std::io::Error| {
            Error::new(
                ErrorKind::Io,
                format!("cannot listen for HTTP on {addr}: {e}"),
            )
        };
        let mut listener = TcpListener::bind(addr).map_err(io)?;
        let local_addr = listener.local_addr().map_err(io)?;
        let poll = Poll::new().map_err(io)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(io)?);
        let (job_tx, job_rx) = bounded::<Job>(limits::HTTP_HANDLER_QUEUE);
        // Each handler holds at most one result, and the loop drains them every turn.
        let (done_tx, done_rx) = bounded(limits::HTTP_HANDLER_QUEUE + threads);
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let mut handlers = Vec::with_capacity(threads);
        for i in 0..threads {
            let (rx, tx, waker, handle) = (
                job_rx.clone(),
                done_tx.clone(),
                waker.clone(),
                handle.clone(),
            );
            let t = std::thread::Builder::new()
                .name(format!("swrtc-http-{i}"))
                .spawn(move || run_handler(&rx, &tx, &waker, &*handle))?;
            handlers.push(t);
        }
        let max_connections = lim.limits.max_connections;
        let mut lp = Loop {
            poll,
            listener,
            conns: HashMap::new(),
            per_source: HashMap::new(),
            next_token: FIRST_CONN,
            job_tx,
            done_rx,
            lim,
            paused_until: None,
            conn_cap: max_connections,
            cap_lowered_until: None,
            last_accept_warn: None,
            stop: stop.clone(),
            counters: counters.clone(),
        };
        let event_loop = std::thread::Builder::new()
            .name("swrtc-http".into())
            .spawn(move || lp.run())?;
        Ok(HttpServer {
            stop,
            waker,
            event_loop: Some(event_loop),
            handlers,
            counters,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> HttpStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HttpStats {
            accepted: get(&c.accepted),
            refused: get(&c.refused),
            accept_errors: get(&c.accept_errors),
            timed_out: get(&c.timed_out),
            evicted: get(&c.evicted),
            queue_full: get(&c.queue_full),
            open: get(&c.open),
        }
    }

    /// Stops: the event loop closes every connection and the listener at once (within one
    /// wake-up, whatever clients do), then each handler finishes the request it has (a
    /// route takes at most the command timeout plus the app's `on_peer`) and exits.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.event_loop.take() {
            let _ = t.join();
        }
        let me = std::thread::current().id();
        for t in self.handlers.drain(..) {
            // A handler that stops its own server must not join itself.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_handler(
    jobs: &Receiver<Job>,
    done: &Sender<(Token, Response)>,
    waker: &Waker,
    handle: &(dyn Fn(&Request) -> Response + Send + Sync),
) {
    // Ends when the event loop drops the job sender (stop).
    while let Ok(job) = jobs.recv() {
        // A panicking route must not take a handler thread down with it.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(&job.req)))
            .unwrap_or_else(|_| {
                warn!(
                    "signalling route panicked on {} {}",
                    job.req.method, job.req.path
                );
                super::routes::with_cors(Response::error(500, "internal error"))
            });
        if done.send((job.token, r)).is_err() {
            return;
        }
        let _ = waker.wake();
    }
}

struct Loop {
    poll: Poll,
    listener: TcpListener,
    conns: HashMap<Token, Conn>,
    per_source: HashMap<IpAddr, usize>,
    next_token: usize,
    job_tx: Sender<Job>,
    done_rx: Receiver<(Token, Response)>,
    lim: HttpBounds,
    /// Accepting is paused until then after running out of fds.
    paused_until: Option<Instant>,
    /// The connection cap in force: `max_connections`, or lower after running out of fds.
    conn_cap: usize,
    cap_lowered_until: Option<Instant>,
    last_accept_warn: Option<Instant>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut last_sweep = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            if let Err(e) = self.poll.poll(&mut events, Some(TICK)) {
                if e.kind() != IoKind::Interrupted {
                    warn!("HTTP event loop poll failed: {e}");
                    std::thread::sleep(TICK);
                }
                continue;
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(now),
                    WAKER => {}
                    t => self.drive(t, now),
                }
            }
            while let Ok((t, r)) = self.done_rx.try_recv() {
                self.respond(t, &r, now);
            }
            // Edge-triggered: after a pause, connections that queued in the backlog
            // meanwhile bring no new event; go and take them.
            if self.paused_until.is_some_and(|u| now >= u) {
                self.paused_until = None;
                self.accept(now);
            }
            if now.duration_since(last_sweep) >= TICK {
                last_sweep = now;
                self.expire(now);
            }
        }
        // Dropping the connections closes them, whatever state their clients left them in.
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            self.close(t);
        }
    }

    fn accept(&mut self, now: Instant) {
        if self.paused_until.is_some() {
            return;
        }
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == IoKind::WouldBlock => return,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(e) if e.kind() == IoKind::ConnectionAborted => continue,
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays in the backlog.
                    // Shed the oldest idle connection to make room and try again at once;
                    // with none to shed, pause rather than spin or give up listening.
                    self.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                    // Several: the request the new connection brings may need fds itself (an
                    // offer binds the peer's UDP sockets).
                    // Until the fds come back, hold the connections below where they ran out,
                    // so the room stays: at that cap new ones replace idle ones.
                    let shed = (0..EMFILE_SHED).filter(|_| self.evict_idle()).count();
                    self.conn_cap = self.conns.len().max(1);
                    self.cap_lowered_until = Some(now + FD_CAP_HOLD);
                    if shed > 0 {
                        continue;
                    }
                    self.paused_until = Some(now + limits::HTTP_ACCEPT_BACKOFF);
                    if self
                        .last_accept_warn
                        .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1))
                    {
                        self.last_accept_warn = Some(now);
                        warn!(
                            "HTTP accept failed ({e}); pausing {:?} and listening on ({} failures so far)",
                            limits::HTTP_ACCEPT_BACKOFF,
                            self.counters.accept_errors.load(Ordering::Relaxed)
                        );
                    }
                    return;
                }
            };
            let ip = peer.ip();
            let from_source = self.per_source.get(&ip).copied().unwrap_or(0);
            // At the overall cap an idle connection (no request begun) makes room: idle
            // ones are the cheapest to lose and the easiest to flood with.
            // (Checked after the per-source cap: a refused connection must not cost another
            // its place.)
            if self.cap_lowered_until.is_some_and(|u| now >= u) {
                self.cap_lowered_until = None;
                self.conn_cap = self.lim.limits.max_connections;
            }
            let over_source = from_source >= self.lim.limits.max_connections_per_source;
            if over_source || (self.conns.len() >= self.conn_cap && !self.evict_idle()) {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                debug!("HTTP connection from {peer} refused: at the connection cap");
                let mut c = Conn::new(stream, peer, &self.lim, now);
                c.last_words(&busy("too many connections"));
                continue;
            }
            let token = Token(self.next_token);
            self.next_token += 1;
            let mut conn = Conn::new(stream, peer, &self.lim, now);
            // Without it, a response written after a preflight on a kept-alive connection
            // waited ~40 ms for a delayed ACK (measured with Pipecat's JS client).
            let _ = conn.stream.set_nodelay(true);
            if let Err(e) = self.poll.registry().register(
                &mut conn.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                debug!("HTTP connection from {peer} not registered: {e}");
                continue;
            }
            *self.per_source.entry(ip).or_insert(0) += 1;
            self.conns.insert(token, conn);
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
            self.counters.open.fetch_add(1, Ordering::Relaxed);
            self.drive(token, now);
        }
    }

    fn drive(&mut self, t: Token, now: Instant) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        let action = c.drive(&self.lim, now);
        self.act(t, action, now);
    }

    fn respond(&mut self, t: Token, r: &Response, now: Instant) {
        // The connection may have closed while its handler ran.
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        let action = c.respond(r, &self.lim, now);
        self.act(t, action, now);
    }

    fn act(&mut self, t: Token, action: Action, now: Instant) {
        match action {
            Action::Wait => {}
            Action::Close => self.close(t),
            Action::Dispatch(req) => match self.job_tx.try_send(Job { token: t, req }) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                    self.respond(t, &busy("every handler is busy"), now);
                }
            },
        }
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| now >= d))
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            if let Some(c) = self.conns.get_mut(&t) {
                if c.is_reading() && !c.is_idle() {
                    c.last_words(&Response::error(408, "the request took too long"));
                }
                debug!("HTTP connection from {} timed out", c.peer);
            }
            self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
            self.close(t);
        }
    }

    /// Closes the oldest connection that is between requests; false when there is none.
    fn evict_idle(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_idle())
            .min_by_key(|(t, _)| t.0)
            .map(|(t, _)| *t);
        match oldest {
            Some(t) => {
                self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                self.close(t);
                true
            }
            None => false,
        }
    }

    fn close(&mut self, t: Token) {
        let Some(mut c) = self.conns.remove(&t) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        let ip = c.peer.ip();
        if let Some(n) = self.per_source.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&ip);
            }
        }
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A 503 that asks the client to come back.
pub(crate) fn busy(why: &str) -> Response {
    Response::error(503, why).with_header("Retry-After", &limits::HTTP_RETRY_AFTER_SECS.to_string())
}
