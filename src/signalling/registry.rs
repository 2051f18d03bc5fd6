//! The pc_id registry: which peer a pc_id names, renegotiation and restart, single and
//! multiple connection modes, `/start` sessions, and handing new peers to the app. Peers are
//! held weakly: the app owns them, and an entry goes away once its peer is closed or
//! dropped. Knows nothing of HTTP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use serde_json::Value;
use tracing::{debug, info};

use crate::api::Peer;
use crate::error::{Error, ErrorKind};
use crate::runtime::Runtime;
use crate::session::{sdp, PeerState};

use super::{esp32, ConnectionMode, NewPeer, OnPeer, Protocol, ServerConfig};

/// New peers waiting for [`Registry::accept`]; past this, offers get 503 (the app is not
/// accepting peers, and each one waiting holds sockets).
pub const MAX_PENDING_PEERS: usize = 64;

/// `/start` sessions kept; the oldest is forgotten past this.
pub const MAX_SESSIONS: usize = 1024;

/// A `/start` session is forgotten this long after it was created (clients post their
/// offer right after `/start`; restarts of a long call reuse it within this time).
pub const SESSION_TTL: Duration = Duration::from_secs(6 * 3600);

/// A parsed `POST /api/offer` body.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferRequest {
    /// The SDP offer.
    pub sdp: String,
    /// The client's pc_id from an earlier answer, if any.
    pub pc_id: Option<String>,
    /// Close the old peer and start a new one.
    pub restart_pc: bool,
    /// The app's data for this connection (`request_data`, or the `/start` body).
    pub request_data: Value,
}

/// The answer to an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The SDP answer.
    pub sdp: String,
    /// The pc_id the client uses from now on.
    pub pc_id: String,
}

/// A live session as a WHIP/WHEP resource.
pub struct Resource {
    /// Its peer.
    pub peer: Arc<Peer>,
    /// The signalling it came by.
    pub protocol: Protocol,
    /// Its entity tag, quoted (`"…"`), for `ETag` and `If-Match`.
    pub etag: String,
    /// The client's ICE ufrag from its offer.
    pub remote_ufrag: Option<String>,
}

/// Why a request failed: an HTTP status and a message for the `{"error": …}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    /// HTTP status.
    pub status: u16,
    /// For people.
    pub message: String,
}

impl RouteError {
    /// A failure with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> RouteError {
        RouteError {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for RouteError {
    fn from(e: Error) -> Self {
        let status = match e.kind() {
            ErrorKind::InvalidArgument | ErrorKind::InvalidSdp | ErrorKind::InvalidCandidate => 400,
            ErrorKind::Closed => 404,
            ErrorKind::TooLarge => 413,
            ErrorKind::Timeout | ErrorKind::WouldBlock => 503,
            _ => 500,
        };
        RouteError::new(status, e.message())
    }
}

/// A peer the registry knows: held weakly (the app owns it), with the signalling it came
/// by, where its offer came from (for the per-source caps), how many remote candidates it
/// was given and, for WHIP and WHEP resources, an entity tag.
struct Entry {
    peer: Weak<Peer>,
    source: Option<IpAddr>,
    candidates: usize,
    protocol: Protocol,
    etag: String,
    /// The client's ICE ufrag from its offer: a trickle fragment with another one asks for
    /// an ICE restart.
    remote_ufrag: Option<String>,
}

struct StartSession {
    data: Value,
    created: Instant,
}

/// The server's state: peers by pc_id, sessions by id, the queue of peers for `accept`.
/// All methods take `&self` and may be called from any thread.
pub struct Registry {
    cfg: ServerConfig,
    runtime: Runtime,
    peers: Mutex<HashMap<String, Entry>>,
    sessions: Mutex<HashMap<String, StartSession>>,
    /// Serialises offers in single mode so two clients cannot both become "the" connection.
    single: Mutex<()>,
    on_peer: Option<OnPeer>,
    pending_tx: Sender<NewPeer>,
    pending_rx: Receiver<NewPeer>,
}

/// The runtime of a server given none: the process-wide one, unless the server's ICE
/// servers include a STUN or TURN server; then a runtime of its own that uses them too
/// (server-reflexive addresses and relays for each peer's sockets), so one setting serves
/// both the clients and the server's own peers.
fn runtime_for_ice_servers(servers: &[super::IceServer]) -> crate::Result<Runtime> {
    let used = crate::ice::parse_servers(servers)?.iter().any(|u| {
        matches!(
            u.scheme,
            crate::ice::IceScheme::Stun | crate::ice::IceScheme::Turn
        ) && u.transport == crate::ice::IceTransport::Udp
    });
    if !used {
        return Runtime::global();
    }
    Runtime::new(crate::config::RuntimeConfig {
        ice_servers: servers.to_vec(),
        ..crate::config::RuntimeConfig::default()
    })
}

impl Registry {
    /// A registry for `cfg`. New peers go to `on_peer` (called on the HTTP thread that
    /// answered the offer, before the answer is sent), or without one, wait for
    /// [`Registry::accept`].
    pub fn new(mut cfg: ServerConfig, on_peer: Option<OnPeer>) -> crate::Result<Registry> {
        let runtime = match &cfg.runtime {
            Some(rt) => rt.clone(),
            None => runtime_for_ice_servers(&cfg.ice_servers)?,
        };
        // A server on loopback serves local clients: its peers answer with 127.0.0.1.
        if cfg.peer.bind_ip.is_none() && cfg.addr.ip().is_loopback() {
            cfg.peer.bind_ip = Some(cfg.addr.ip());
        }
        let (pending_tx, pending_rx) = bounded(MAX_PENDING_PEERS);
        Ok(Registry {
            cfg,
            runtime,
            peers: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            single: Mutex::new(()),
            on_peer,
            pending_tx,
            pending_rx,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Answers an offer: renegotiates the peer named by `pc_id`, restarts it
    /// (`restart_pc`), or creates a new peer and hands it to the app.
    pub fn offer(&self, req: OfferRequest) -> Result<Answer, RouteError> {
        self.offer_from(req, None)
    }

    /// [`Registry::offer`] from `source` (the client's address), which the per-source peer
    /// caps count against; `None` counts only against the overall caps.
    pub fn offer_from(
        &self,
        req: OfferRequest,
        source: Option<IpAddr>,
    ) -> Result<Answer, RouteError> {
        self.offer_as(req, Protocol::Pipecat, source)
    }

    /// [`Registry::offer_from`] for a peer that comes by `protocol`; the app's [`NewPeer`]
    /// says which. WHIP and WHEP offers always make a new peer (their `pc_id` names the
    /// session resource; `pc_id` and `restart_pc` are ignored).
    pub fn offer_as(
        &self,
        mut req: OfferRequest,
        protocol: Protocol,
        source: Option<IpAddr>,
    ) -> Result<Answer, RouteError> {
        if protocol != Protocol::Pipecat {
            req.pc_id = None;
            req.restart_pc = false;
        }
        // Reject garbage, and offers of hundreds of media sections (each costs the peer
        // memory), before binding sockets for them.
        let lim = &self.cfg.limits;
        let m_lines = req.sdp.lines().filter(|l| l.starts_with("m=")).count();
        if m_lines > lim.max_offer_m_lines {
            return Err(RouteError::new(
                400,
                format!(
                    "the offer has {m_lines} media sections; at most {} are accepted",
                    lim.max_offer_m_lines
                ),
            ));
        }
        sdp::parse_offer(&req.sdp).map_err(RouteError::from)?;
        let compact = self.cfg.esp32 || esp32::is_esp32_offer(&req.sdp);
        let _single = (self.cfg.mode == ConnectionMode::Single).then(|| self.single.lock());
        self.sweep();

        let known = req
            .pc_id
            .as_deref()
            .and_then(|id| self.live_peer(id).map(|p| (id, p)));
        if let Some((id, peer)) = known {
            if !req.restart_pc {
                let answer = peer.handle_offer(&req.sdp)?;
                debug!("renegotiated {id}");
                return Ok(Answer {
                    sdp: self.finish(answer, &req.sdp, compact)?,
                    pc_id: id.to_owned(),
                });
            }
            self.peers.lock().remove(id);
            info!("restart_pc: closing {id}");
            // The app holding the peer sees it close.
            let _ = peer.close_quietly();
        }

        if self.cfg.mode == ConnectionMode::Single && self.live_count() > 0 {
            return Err(RouteError::new(
                400,
                match &req.pc_id {
                    Some(id) => format!(
                        "pc_id mismatch: {id} is not the active connection (single-connection mode)"
                    ),
                    None => "a connection is already active (single-connection mode)".into(),
                },
            ));
        }

        self.admit(source)?;
        let pc_id = new_pc_id(&self.cfg.pc_id_name)?;
        let handler = self
            .cfg
            .peer_handler
            .as_ref()
            .and_then(|make| make(&pc_id, &req.request_data));
        let peer = Arc::new(match protocol {
            Protocol::Whip | Protocol::Whep => {
                Peer::with_runtime_any_media(&self.runtime, self.cfg.peer.clone(), handler)?
            }
            Protocol::Pipecat => Peer::with_runtime(&self.runtime, self.cfg.peer.clone(), handler)?,
        });
        // On failure the peer is dropped here, which closes it.
        let answer = self.finish(peer.handle_offer(&req.sdp)?, &req.sdp, compact)?;
        let etag = format!("\"{}\"", hex(&random_bytes::<8>()?));
        self.peers.lock().insert(
            pc_id.clone(),
            Entry {
                peer: Arc::downgrade(&peer),
                source,
                candidates: 0,
                protocol,
                etag,
                remote_ufrag: sdp::ice_ufrag(&req.sdp).map(str::to_owned),
            },
        );
        let new = NewPeer {
            peer,
            pc_id: pc_id.clone(),
            request_data: req.request_data,
            protocol,
        };
        if let Some(on_peer) = &self.on_peer {
            on_peer(new);
        } else if let Err(e) = self.pending_tx.try_send(new) {
            self.peers.lock().remove(&pc_id);
            let reason = match e {
                TrySendError::Full(_) => "the app is not accepting new peers",
                TrySendError::Disconnected(_) => "the server is stopping",
            };
            return Err(RouteError::new(503, reason));
        }
        info!("new {} peer {pc_id}", protocol.as_str());
        Ok(Answer { sdp: answer, pc_id })
    }

    /// Adds trickled candidates (`""` ends them) to the peer named `pc_id`. Candidates the
    /// peer cannot parse (such as mDNS `.local` ones) are skipped, as browsers expect.
    /// A peer takes at most `limits.max_remote_candidates` over all its PATCHes: one that
    /// would pass it is refused whole with 400 (the ones added before stay).
    pub fn add_candidates(&self, pc_id: &str, candidates: &[String]) -> Result<(), RouteError> {
        let peer = self
            .live_peer(pc_id)
            .ok_or_else(|| RouteError::new(404, format!("unknown pc_id {pc_id}")))?;
        let max = self.cfg.limits.max_remote_candidates;
        {
            let mut peers = self.peers.lock();
            let Some(entry) = peers.get_mut(pc_id) else {
                return Err(RouteError::new(404, format!("unknown pc_id {pc_id}")));
            };
            let n = candidates.iter().filter(|c| !c.is_empty()).count();
            if entry.candidates + n > max {
                return Err(RouteError::new(
                    400,
                    format!(
                        "too many remote candidates for {pc_id}: {} given before, {n} now, at most {max} per peer",
                        entry.candidates
                    ),
                ));
            }
            entry.candidates += n;
        }
        for c in candidates {
            match peer.add_ice_candidate(c) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::InvalidCandidate => {
                    debug!("{pc_id}: candidate skipped: {e}");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Starts a `/start` session whose offers get `request_data`; returns its id.
    pub fn start_session(&self, request_data: Value) -> Result<String, RouteError> {
        let id = uuid_like()?;
        let now = Instant::now();
        let mut s = self.sessions.lock();
        s.retain(|_, v| now.duration_since(v.created) < SESSION_TTL);
        if s.len() >= MAX_SESSIONS {
            if let Some(oldest) = s
                .iter()
                .min_by_key(|(_, v)| v.created)
                .map(|(k, _)| k.clone())
            {
                s.remove(&oldest);
            }
        }
        s.insert(
            id.clone(),
            StartSession {
                data: request_data,
                created: now,
            },
        );
        Ok(id)
    }

    /// The request_data of a live `/start` session.
    pub fn session_data(&self, id: &str) -> Option<Value> {
        let s = self.sessions.lock();
        s.get(id)
            .filter(|v| v.created.elapsed() < SESSION_TTL)
            .map(|v| v.data.clone())
    }

    /// The next new peer, for apps without an `on_peer` callback. `None` timeout: do not
    /// wait. Peers that closed while waiting are skipped.
    pub fn accept(&self, timeout: Option<Duration>) -> Option<NewPeer> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let next = match deadline {
                None => self.pending_rx.try_recv().ok(),
                Some(d) => self.pending_rx.recv_deadline(d).ok(),
            }?;
            if next.peer.state() != PeerState::Closed {
                return Some(next);
            }
        }
    }

    /// The live (not closed, not dropped) peer named `pc_id`.
    pub fn peer(&self, pc_id: &str) -> Option<Arc<Peer>> {
        self.live_peer(pc_id)
    }

    /// The live peer named `pc_id` with the signalling it came by and its entity tag (a
    /// quoted string, for WHIP/WHEP `ETag`) and the client's ICE ufrag.
    pub fn resource(&self, pc_id: &str) -> Option<Resource> {
        let (weak, protocol, etag, remote_ufrag) = {
            let peers = self.peers.lock();
            let e = peers.get(pc_id)?;
            (
                e.peer.clone(),
                e.protocol,
                e.etag.clone(),
                e.remote_ufrag.clone(),
            )
        };
        let peer = weak.upgrade().filter(|p| p.state() != PeerState::Closed)?;
        Some(Resource {
            peer,
            protocol,
            etag,
            remote_ufrag,
        })
    }

    /// Ends the session `pc_id` (WHIP/WHEP `DELETE`): forgets it and closes its peer (the
    /// app sees it close). Unknown or already closed: 404.
    pub fn end(&self, pc_id: &str) -> Result<(), RouteError> {
        let peer = self
            .live_peer(pc_id)
            .ok_or_else(|| RouteError::new(404, format!("unknown session {pc_id}")))?;
        self.peers.lock().remove(pc_id);
        info!("{pc_id} ended by its client");
        peer.close()?;
        Ok(())
    }

    /// The runtime the server's peers live on (for its stats).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The pc_ids of live peers.
    pub fn pc_ids(&self) -> Vec<String> {
        self.sweep();
        self.peers.lock().keys().cloned().collect()
    }

    /// Every live peer (for a graceful shutdown).
    pub(crate) fn live_peers(&self) -> Vec<Arc<Peer>> {
        let weak: Vec<_> = self.peers.lock().values().map(|e| e.peer.clone()).collect();
        weak.iter()
            .filter_map(Weak::upgrade)
            .filter(|p| p.state() != PeerState::Closed)
            .collect()
    }

    /// Drops peers waiting for `accept` (they close).
    pub(crate) fn drain_pending(&self) {
        while self.pending_rx.try_recv().is_ok() {}
    }

    /// Refuses a new peer (503, with `Retry-After` from the routes) past the caps on live
    /// and not-yet-connected peers, overall and from `source`. Concurrent offers may pass
    /// together, so a cap can be overshot by at most the number of handler threads.
    fn admit(&self, source: Option<IpAddr>) -> Result<(), RouteError> {
        let lim = &self.cfg.limits;
        let (mut live, mut connecting, mut live_src, mut connecting_src) = (0, 0, 0, 0);
        let mut held = Vec::new();
        for e in self.peers.lock().values() {
            let Some(p) = e.peer.upgrade() else { continue };
            let state = p.state();
            held.push(p);
            if state == PeerState::Closed {
                continue;
            }
            let not_yet = matches!(state, PeerState::New | PeerState::Connecting);
            let same = source.is_some() && e.source == source;
            live += 1;
            connecting += usize::from(not_yet);
            live_src += usize::from(same);
            connecting_src += usize::from(same && not_yet);
        }
        // A last handle's drop closes a peer, which must not happen under our lock.
        drop(held);
        let full = if live >= lim.max_peers {
            Some(format!("{live} peers are live (at most {})", lim.max_peers))
        } else if connecting >= lim.max_connecting_peers {
            Some(format!(
                "{connecting} peers are connecting (at most {})",
                lim.max_connecting_peers
            ))
        } else if live_src >= lim.max_peers_per_source {
            Some(format!(
                "{live_src} peers from your address are live (at most {})",
                lim.max_peers_per_source
            ))
        } else if connecting_src >= lim.max_connecting_peers_per_source {
            Some(format!(
                "{connecting_src} peers from your address are connecting (at most {})",
                lim.max_connecting_peers_per_source
            ))
        } else {
            None
        };
        match full {
            Some(why) => Err(RouteError::new(503, format!("server busy: {why}"))),
            None => Ok(()),
        }
    }

    fn live_peer(&self, pc_id: &str) -> Option<Arc<Peer>> {
        let weak = self.peers.lock().get(pc_id).map(|e| e.peer.clone())?;
        weak.upgrade().filter(|p| p.state() != PeerState::Closed)
    }

    fn live_count(&self) -> usize {
        self.sweep();
        self.peers.lock().len()
    }

    /// Forgets closed and dropped peers.
    fn sweep(&self) {
        // Upgraded handles are dropped after the lock: a last handle's drop closes a peer,
        // which must not happen under our lock.
        let mut held = Vec::new();
        self.peers.lock().retain(|_, e| match e.peer.upgrade() {
            None => false,
            Some(p) => {
                let live = p.state() != PeerState::Closed;
                held.push(p);
                live
            }
        });
        drop(held);
    }

    fn finish(&self, answer: String, offer: &str, compact: bool) -> Result<String, RouteError> {
        if !compact {
            return Ok(answer);
        }
        esp32::compact_answer(&answer, offer, self.cfg.esp32_host).map_err(RouteError::from)
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], RouteError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| RouteError::new(500, format!("no randomness for an id: {e}")))?;
    Ok(b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `"<name>-<32 hex>"`: 128 random bits, unique across processes.
pub fn new_pc_id(name: &str) -> Result<String, RouteError> {
    Ok(format!("{name}-{}", hex(&random_bytes::<16>()?)))
}

/// A random UUID-shaped session id (what Pipecat's `/start` returns).
fn uuid_like() -> Result<String, RouteError> {
    let h = hex(&random_bytes::<16>()?);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}
