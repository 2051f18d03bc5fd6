//! The embeddable HTTP signalling server, a drop-in for Pipecat's SmallWebRTC endpoints:
//! `POST`/`PATCH /api/offer`, `POST /sessions/{id}/api/offer`, `POST /start`, a built-in
//! test page at `/`, and the IETF's WHIP (`/whip`, publish) and WHEP (`/whep`, view)
//! endpoints ([`whip`]). Routes are plain functions over a request and the [`Registry`]
//! ([`routes::handle`]); `server` is a small HTTP/1.1 server on a mio event loop that feeds
//! them to a bounded pool of handler threads, with deadlines and caps no client can outlast.
//! Must not reach into peers' internals: it drives them through the public [`Peer`] API.
//!
//! ```no_run
//! use smallwebrtc::signalling::{Server, ServerConfig};
//! let server = Server::start(ServerConfig::default(), None)?;
//! println!("open {}", server.url());
//! while let Some(new) = server.accept(None) {
//!     new.peer.connect()?; // the app owns `new.peer` (an Arc<Peer>) from here on
//! }
//! # Ok::<(), smallwebrtc::Error>(())
//! ```

mod conn;
pub mod echo;
pub(crate) mod esp32;
mod http;
mod parse;
mod registry;
pub mod routes;
mod server;
mod stats_route;
pub mod whip;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::api::Peer;
use crate::config::PeerConfig;
use crate::error::Result;
use crate::runtime::{PeerHandler, Runtime};

pub use http::{Request, Response};
pub use registry::{Answer, OfferRequest, Registry, Resource, RouteError};
pub use server::{HttpStats, ServerLimits};

/// Feeds `data` to the HTTP request parser in pieces, as a connection would, and panics
/// if anything that must hold for any input does not (for fuzzing; not part of the API).
#[doc(hidden)]
pub fn fuzz_http_request(data: &[u8]) {
    parse::check_any_input(data);
}

/// Pipecat's default port for its development runner.
pub const DEFAULT_PORT: u16 = 7860;

/// Request bodies over this are refused with 413 (offers are a few kB; a full browser
/// offer with every codec stays under 16 kB).
pub const DEFAULT_MAX_BODY: usize = 256 * 1024;

/// A new peer for the app: it owns `peer` from here on (dropping the last `Arc` closes it);
/// the server keeps only a weak reference to renegotiate it.
pub struct NewPeer {
    /// The peer, already answered; call `connect` when the app is ready.
    pub peer: Arc<Peer>,
    /// Its pc_id, `"<name>-<32 hex>"`.
    pub pc_id: String,
    /// The client's `request_data` (or `requestData`, or its `/start` body); for WHIP and
    /// WHEP, the query string's parameters as a JSON object of strings. `Null` if none.
    pub request_data: Value,
    /// The signalling the peer came by.
    pub protocol: Protocol,
}

/// The signalling a peer came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Pipecat's `/api/offer` (or `/sessions/{id}/api/offer`): a two-way bot session.
    Pipecat,
    /// WHIP (RFC 9725): the client publishes audio/video to the app and receives nothing.
    Whip,
    /// WHEP: the client views what the app writes (`write_audio`/`write_video`) and sends
    /// no media.
    Whep,
}

impl Protocol {
    /// `"pipecat"`, `"whip"` or `"whep"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Pipecat => "pipecat",
            Protocol::Whip => "whip",
            Protocol::Whep => "whep",
        }
    }
}

/// What an access hook sees of a request that would create or change a session.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// Upper-case method (`POST`, `PATCH`, `DELETE`).
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    /// Request headers as sent (e.g. `Authorization: Bearer …`).
    pub headers: &'a [(String, String)],
    /// The address the request came from, when known.
    pub peer_addr: Option<SocketAddr>,
    /// Which endpoint family the request is for.
    pub protocol: Protocol,
    /// The request's data: `request_data` of an `/api/offer` body, the `body` of `/start`,
    /// the `/start` session's data, or WHIP/WHEP query parameters; `Null` if none.
    pub request_data: &'a Value,
}

impl AccessRequest<'_> {
    /// The value of the first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The token of an `Authorization: Bearer <token>` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let v = self.header("authorization")?.trim();
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

/// An access hook's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Go on.
    Allow,
    /// 401 with `WWW-Authenticate: Bearer` (no or bad credentials); the text is the error.
    Unauthorized(String),
    /// 403 (credentials fine, not allowed); the text is the error.
    Forbidden(String),
}

/// Decides whether a request may create, change or end a session (WHIP, WHEP,
/// `/api/offer`, `/start`). Called on the HTTP thread before any peer is made; CORS
/// preflights (`OPTIONS`) and the built-in page are not asked about. Keep it short.
pub type AccessHook = Arc<dyn Fn(&AccessRequest<'_>) -> Access + Send + Sync>;

impl fmt::Debug for NewPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewPeer")
            .field("pc_id", &self.pc_id)
            .field("request_data", &self.request_data)
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// Called with each new peer, on the handler thread that answers its offer, before the
/// answer is sent: keep it short (hand the peer to another thread). While it runs, that
/// handler thread serves no other request (the others and every connection's I/O go on).
pub type OnPeer = Arc<dyn Fn(NewPeer) + Send + Sync>;

/// Chooses the event handler of a peer about to be created, from its pc_id and
/// request_data. `None`: the peer's events wait for `poll_event`.
pub type PeerHandlerFactory =
    Arc<dyn Fn(&str, &Value) -> Option<Arc<dyn PeerHandler>> + Send + Sync>;

/// How many clients may be connected at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionMode {
    /// Any number (the default).
    #[default]
    Multiple,
    /// One: while a peer is live, an offer without its pc_id gets 400.
    Single,
}

/// A STUN or TURN server, returned to clients by `/start` (one type with the runtime's).
pub use crate::config::IceServer;

/// Settings of a signalling server. Start from [`ServerConfig::default`].
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:7860`. On a loopback address, peers bind
    /// (and answer with) that address unless `peer.bind_ip` says otherwise.
    pub addr: SocketAddr,
    /// Settings of every peer the server creates.
    pub peer: PeerConfig,
    /// Runtime for the peers; `None`: the process-wide one.
    pub runtime: Option<Runtime>,
    /// Single or multiple connections.
    pub mode: ConnectionMode,
    /// ESP32 mode: every answer compacted for pipecat-esp32 firmware (≤ 4096 bytes, one
    /// sha-256 fingerprint, CRLF). Offers with the ESP32's `SAVP` profile get compacted
    /// answers even without it.
    pub esp32: bool,
    /// In ESP32 answers, keep only the candidates on this address (when it has any).
    pub esp32_host: Option<IpAddr>,
    /// ICE servers handed to clients by `/start` (and as WHIP/WHEP `Link` headers). With
    /// `runtime` `None` and a `stun:` URL among them, the server's peers use them too: the
    /// server then starts a runtime of its own with these servers
    /// (`RuntimeConfig::ice_servers`) instead of the process-wide one. With a runtime
    /// given, that runtime's own `ice_servers` apply to the peers.
    pub ice_servers: Vec<IceServer>,
    /// Largest request body; larger ones get 413.
    pub max_body: usize,
    /// Threads that run the routes (HTTP I/O runs on one event loop thread besides them).
    /// Default 4.
    pub http_threads: usize,
    /// Deadlines and caps: connections, headers, peers, m-lines, candidates.
    pub limits: ServerLimits,
    /// The `<name>` of pc_ids.
    pub pc_id_name: String,
    /// Serve the built-in test page at `/`.
    pub serve_page: bool,
    /// Event handlers for new peers; `None`: peers' events wait for `poll_event`.
    pub peer_handler: Option<PeerHandlerFactory>,
    /// Access control for WHIP, WHEP, `/api/offer` and `/start`; `None`: everyone may.
    pub access: Option<AccessHook>,
}

impl ServerConfig {
    /// Checks every field, the peers' settings included (a bad peer setting fails at start,
    /// not at each offer); the same check for Rust and C callers. Errors:
    /// `InvalidArgument` naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.http_threads == 0 || self.http_threads > 256 {
            return Err(crate::Error::invalid("http_threads must be 1..=256"));
        }
        if self.pc_id_name.is_empty() || !self.pc_id_name.is_ascii() {
            return Err(crate::Error::invalid("pc_id_name must be non-empty ASCII"));
        }
        if self.max_body == 0 {
            return Err(crate::Error::invalid("max_body must be above zero"));
        }
        self.limits.validate()?;
        self.peer.validate()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            peer: PeerConfig::default(),
            runtime: None,
            mode: ConnectionMode::Multiple,
            esp32: false,
            esp32_host: None,
            ice_servers: Vec::new(),
            max_body: DEFAULT_MAX_BODY,
            http_threads: 4,
            limits: ServerLimits::default(),
            pc_id_name: "SmallWebRTCConnection".into(),
            serve_page: true,
            peer_handler: None,
            access: None,
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("addr", &self.addr)
            .field("peer", &self.peer)
            .field("mode", &self.mode)
            .field("esp32", &self.esp32)
            .field("esp32_host", &self.esp32_host)
            .field("ice_servers", &self.ice_servers)
            .field("max_body", &self.max_body)
            .field("http_threads", &self.http_threads)
            .field("limits", &self.limits)
            .field("pc_id_name", &self.pc_id_name)
            .field("serve_page", &self.serve_page)
            .field("peer_handler", &self.peer_handler.is_some())
            .field("access", &self.access.is_some())
            .finish()
    }
}

/// A running signalling server. Dropping it (or [`Server::stop`]) stops listening; peers
/// the app holds live on, peers not yet accepted close.
pub struct Server {
    registry: Arc<Registry>,
    http: server::HttpServer,
}

impl Server {
    /// Starts listening on `cfg.addr` (port 0: any). New peers go to `on_peer`, or without
    /// it wait for [`Server::accept`]. Errors: `Io` (address in use), `InvalidArgument`.
    pub fn start(cfg: ServerConfig, on_peer: Option<OnPeer>) -> Result<Server> {
        cfg.validate()?;
        let (addr, threads) = (cfg.addr, cfg.http_threads);
        let bounds = server::HttpBounds::new(&cfg.limits, cfg.max_body);
        let registry = Arc::new(Registry::new(cfg, on_peer)?);
        let reg = registry.clone();
        let http = server::HttpServer::start(
            addr,
            threads,
            bounds,
            Arc::new(move |req| routes::handle(req, &reg)),
        )?;
        Ok(Server { registry, http })
    }

    /// The address it listens on (with the actual port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// The URL of the built-in page, e.g. `http://127.0.0.1:7860/`.
    pub fn url(&self) -> String {
        let a = self.local_addr();
        let host = if a.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            a.ip()
        };
        format!("http://{}/", SocketAddr::new(host, a.port()))
    }

    /// The next new peer (without an `on_peer` callback). `None` timeout: do not wait.
    pub fn accept(&self, timeout: Option<Duration>) -> Option<NewPeer> {
        self.registry.accept(timeout)
    }

    /// The registry (for inspection: live pc_ids, peers by pc_id).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Counters of the HTTP listener: connections accepted, refused at a cap, timed out,
    /// accept failures for want of fds.
    pub fn http_stats(&self) -> HttpStats {
        self.http.stats()
    }

    /// Stops listening and closes every connection at once (a client stalled mid-request
    /// holds nothing), then waits for the handler threads to finish the requests they
    /// have: bounded by one route (an offer waits for its peer at most the 5 s command
    /// timeout) plus the app's `on_peer`.
    pub fn stop(mut self) {
        self.stop_listening();
    }

    /// Graceful shutdown: stops listening (requests in progress finish), then says goodbye
    /// to every live peer this server created: `peerLeft` on its data channel, then SCTP
    /// shutdown and DTLS close_notify, so clients notice at once instead of at their
    /// consent timeout. Returns how many peers it closed with their goodbyes sent; returns
    /// within `timeout` plus the time requests in progress take to finish (a peer whose
    /// I/O thread has not answered by then still closes, uncounted). Peers the app holds
    /// stay valid, in `Closed`; their handlers get the `Closed` state. Peers of other
    /// servers on the same runtime are left alone (see [`Runtime::shutdown`] for all).
    ///
    /// Any thread except the server's HTTP threads and the runtime's callback threads.
    /// Drop the server afterwards (or call it again: it is idempotent).
    pub fn shutdown(&mut self, timeout: Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        self.stop_listening();
        let peers = self.registry.live_peers();
        peers
            .iter()
            .filter(|p| {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                p.close_and_wait(left).is_ok()
            })
            .count()
    }

    fn stop_listening(&mut self) {
        self.http.stop();
        self.registry.drain_pending();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_listening();
    }
}
