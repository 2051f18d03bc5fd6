//! C ABI of the signalling server: configuration, start, new peers by callback or pull,
//! local port, stop. Conversions only; the server lives in `crate::signalling`.

use std::ffi::{c_char, c_void, CString};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::runtime::Runtime;
use crate::signalling::{
    Access, AccessRequest, ConnectionMode, NewPeer, Protocol, Server, ServerConfig, ServerLimits,
};

use super::peer::{from_c_config, to_c_config, SwrtcPeer, SwrtcPeerConfig, SwrtcProtocol};
use super::runtime::SwrtcRuntime;
use super::{cstr_opt, guard, invalid, SwrtcResult};

/// A running HTTP signalling server (Pipecat's SmallWebRTC endpoints). Opaque.
pub struct SwrtcServer {
    server: Server,
}

/// Settings of a signalling server. Fill with `swrtc_server_config_default` first, then
/// change fields. Strings are NUL-terminated and copied by `swrtc_server_new`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SwrtcServerConfig {
    /// Address to listen on, "IP:PORT" (port 0: any, see `swrtc_server_local_port`).
    /// NULL: "127.0.0.1:7860". On a loopback address, peers bind and answer with it
    /// unless `peer.bind_ip` is set.
    pub addr: *const c_char,
    /// Settings of every peer the server creates (defaults from `swrtc_peer_config_default`).
    pub peer: SwrtcPeerConfig,
    /// Allow one connection at a time (others get HTTP 400). Default false.
    pub single_connection: bool,
    /// Compact every answer for pipecat-esp32 firmware (<= 4096 bytes, sha-256 only, CRLF).
    /// Offers with the ESP32's SAVP profile are compacted even without it. Default false.
    pub esp32: bool,
    /// In ESP32 answers, keep only candidates on this IP. NULL: all.
    pub esp32_host: *const c_char,
    /// ICE servers `POST /start` hands to clients, as a JSON array of
    /// `{"urls":[...],"username":...,"credential":...}`. NULL: none. With `rt` NULL in
    /// `swrtc_server_new` and a `stun:` URL among them, the server's peers use them too
    /// (a runtime of the server's own); with a runtime given, its `ice_servers_json`
    /// applies to the peers.
    pub ice_servers_json: *const c_char,
    /// Largest request body in bytes; larger ones get 413. Default 262144.
    pub max_body: usize,
    /// Threads that run the routes (1..=256); HTTP I/O runs on one event loop thread
    /// besides them. Default 4.
    pub http_threads: u32,
    /// The name in pc_ids (`"<name>-<32 hex>"`). NULL: "SmallWebRTCConnection".
    pub pc_id_name: *const c_char,
    /// Serve the built-in test page at "/". Default true.
    pub serve_page: bool,
    /// Wait for a request line and headers from their first byte, in ms. Default 5000.
    pub http_head_timeout_ms: u32,
    /// Wait for a request body once its head is in, in ms. Default 5000.
    pub http_body_timeout_ms: u32,
    /// A kept-alive connection with no request this long is closed, in ms. Default 15000.
    pub http_idle_timeout_ms: u32,
    /// A response the client does not read within this drops its connection, in ms.
    /// Default 5000.
    pub http_write_timeout_ms: u32,
    /// Headers per request; more get HTTP 431. Default 64.
    pub max_headers: u32,
    /// Bytes of request line plus headers; more get HTTP 431. Default 16384.
    pub max_head_bytes: u32,
    /// Open HTTP connections; past it new ones get 503 and are closed. Default 256.
    pub max_connections: u32,
    /// Open HTTP connections from one source address. Default 32.
    pub max_connections_per_source: u32,
    /// Media sections (m-lines) per offer; more get HTTP 400. Default 8.
    pub max_offer_m_lines: u32,
    /// Remote ICE candidates per peer over all its PATCHes; a PATCH past it gets 400 (the
    /// ones added before stay). Default 64.
    pub max_remote_candidates: u32,
    /// Live peers; past it offers get 503 with Retry-After. Default 256.
    pub max_peers: u32,
    /// Live peers whose offers came from one source address. Default 32.
    pub max_peers_per_source: u32,
    /// Peers answered but not yet connected; past it offers get 503. Default 64.
    pub max_connecting_peers: u32,
    /// Not-yet-connected peers from one source address. Default 8.
    pub max_connecting_peers_per_source: u32,
}

/// Callbacks of a server. With `on_peer` NULL (or no callbacks), new peers wait for
/// `swrtc_server_accept`. Zero-initialise it (`= {0}`) so callbacks added in later
/// versions stay NULL. `swrtc_peer_protocol` tells which endpoint a peer came by.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SwrtcServerCallbacks {
    /// Passed first to `on_peer`; must stay valid until `swrtc_server_free` returns.
    pub user_data: *mut c_void,
    /// A new client connected: `peer` is already answered and now belongs to the app (free
    /// it with `swrtc_peer_free`; the server keeps no reference that keeps it alive, and
    /// still renegotiates it while it lives). Its events are pulled with
    /// `swrtc_peer_poll_event`; call `swrtc_peer_connect` when ready. `pc_id` and
    /// `request_data_json` (the client's request_data as JSON, "null" if none) are valid
    /// only during the call. Runs on one of the server's handler threads before the answer is
    /// sent: keep it short (hand the peer to another thread). Any `swrtc_*` function may be
    /// called from it.
    pub on_peer: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            peer: *mut SwrtcPeer,
            pc_id: *const c_char,
            request_data_json: *const c_char,
        ),
    >,
    /// Access control (NULL: everyone may). Asked before `POST`/`PATCH`/`DELETE` on WHIP
    /// (`/whip`), WHEP (`/whep`), `/api/offer` and `/start` go on (CORS preflights and the
    /// built-in page are not asked). Return 0 (or 200) to allow, 401 to refuse with
    /// `WWW-Authenticate: Bearer` (missing or bad credentials), 403 to forbid; any other
    /// value counts as 403. `req` and every string in it are valid only during the call.
    /// Runs on the server's HTTP threads, possibly several at once: keep it short and
    /// thread-safe. Any `swrtc_*` function may be called from it.
    pub on_access:
        Option<unsafe extern "C" fn(user_data: *mut c_void, req: *const SwrtcAccessRequest) -> i32>,
}

/// One HTTP request header: NUL-terminated name (as sent) and value.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SwrtcHeader {
    /// Header name as the client sent it (compare case-insensitively).
    pub name: *const c_char,
    /// Its value.
    pub value: *const c_char,
}

/// A request the `on_access` callback decides on. Everything is borrowed for the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SwrtcAccessRequest {
    /// Upper-case method: "POST", "PATCH" or "DELETE".
    pub method: *const c_char,
    /// Path without the query string (e.g. "/whip", "/whep/<pc_id>", "/api/offer").
    pub path: *const c_char,
    /// Which endpoint family: `SWRTC_PROTOCOL_PIPECAT` (`/api/offer`, `/start`),
    /// `SWRTC_PROTOCOL_WHIP` or `SWRTC_PROTOCOL_WHEP`.
    pub protocol: SwrtcProtocol,
    /// The request headers, `headers_len` of them, in arrival order.
    pub headers: *const SwrtcHeader,
    /// Number of headers.
    pub headers_len: usize,
    /// The request's data as JSON ("null" if none): `request_data` of an `/api/offer` body,
    /// `body` of `/start`, or the WHIP/WHEP query parameters as an object of strings.
    pub request_data_json: *const c_char,
    /// The client's address "IP:PORT", or NULL when unknown.
    pub peer_addr: *const c_char,
}

struct CallbackTarget(SwrtcServerCallbacks);

// SAFETY: the header documents that on_peer runs on the server's HTTP threads and that
// user_data must be usable from them; the library never dereferences user_data.
unsafe impl Send for CallbackTarget {}
// SAFETY: as above.
unsafe impl Sync for CallbackTarget {}

fn c_protocol(p: Protocol) -> SwrtcProtocol {
    match p {
        Protocol::Pipecat => SwrtcProtocol::SWRTC_PROTOCOL_PIPECAT,
        Protocol::Whip => SwrtcProtocol::SWRTC_PROTOCOL_WHIP,
        Protocol::Whep => SwrtcProtocol::SWRTC_PROTOCOL_WHEP,
    }
}

/// A C string of `s`; interior NULs (which HTTP header values cannot carry anyway) cut it.
fn c_text(s: &str) -> CString {
    let end = s.find('\0').unwrap_or(s.len());
    CString::new(&s[..end]).unwrap_or_default()
}

impl CallbackTarget {
    fn access(&self, r: &AccessRequest<'_>) -> Access {
        let Some(f) = self.0.on_access else {
            return Access::Allow;
        };
        let texts: Vec<(CString, CString)> = r
            .headers
            .iter()
            .map(|(n, v)| (c_text(n), c_text(v)))
            .collect();
        let headers: Vec<SwrtcHeader> = texts
            .iter()
            .map(|(n, v)| SwrtcHeader {
                name: n.as_ptr(),
                value: v.as_ptr(),
            })
            .collect();
        let (method, path) = (c_text(r.method), c_text(r.path));
        let data = c_text(&r.request_data.to_string());
        let addr = r.peer_addr.map(|a| c_text(&a.to_string()));
        let req = SwrtcAccessRequest {
            method: method.as_ptr(),
            path: path.as_ptr(),
            protocol: c_protocol(r.protocol),
            headers: headers.as_ptr(),
            headers_len: headers.len(),
            request_data_json: data.as_ptr(),
            peer_addr: addr.as_ref().map_or(std::ptr::null(), |a| a.as_ptr()),
        };
        // SAFETY: the app registered this function for this user_data (see header); every
        // pointer in `req` outlives the call.
        match unsafe { f(self.0.user_data, &req) } {
            0 | 200 => Access::Allow,
            401 => Access::Unauthorized("unauthorized".into()),
            _ => Access::Forbidden("forbidden".into()),
        }
    }

    fn deliver(&self, new: NewPeer) {
        let Some(f) = self.0.on_peer else { return };
        let pc_id = CString::new(new.pc_id).unwrap_or_default();
        let data = CString::new(new.request_data.to_string()).unwrap_or_default();
        let peer = Box::into_raw(Box::new(SwrtcPeer::from_shared(
            new.peer,
            c_protocol(new.protocol),
        )));
        // SAFETY: the app registered this function for this user_data (see header); the
        // strings outlive the call; the peer pointer is handed over to the app.
        unsafe { f(self.0.user_data, peer, pc_id.as_ptr(), data.as_ptr()) };
    }
}

/// Fills `cfg` with the defaults (listen on 127.0.0.1:7860, multiple connections, peers
/// with `swrtc_peer_config_default`'s settings).
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` if `cfg` is NULL. Any thread.
///
/// # Safety
/// `cfg` is NULL or writable for one `SwrtcServerConfig`.
#[no_mangle]
pub unsafe extern "C" fn swrtc_server_config_default(cfg: *mut SwrtcServerConfig) -> SwrtcResult {
    if cfg.is_null() {
        return invalid("cfg is NULL");
    }
    guard(|| {
        let d = ServerConfig::default();
        let l = &d.limits;
        let ms = |t: Duration| u32::try_from(t.as_millis()).unwrap_or(u32::MAX);
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let c = SwrtcServerConfig {
            addr: std::ptr::null(),
            peer: to_c_config(&d.peer),
            single_connection: false,
            esp32: false,
            esp32_host: std::ptr::null(),
            ice_servers_json: std::ptr::null(),
            max_body: d.max_body,
            http_threads: d.http_threads as u32,
            pc_id_name: std::ptr::null(),
            serve_page: d.serve_page,
            http_head_timeout_ms: ms(l.head_timeout),
            http_body_timeout_ms: ms(l.body_timeout),
            http_idle_timeout_ms: ms(l.idle_timeout),
            http_write_timeout_ms: ms(l.write_timeout),
            max_headers: count(l.max_headers),
            max_head_bytes: count(l.max_head_bytes),
            max_connections: count(l.max_connections),
            max_connections_per_source: count(l.max_connections_per_source),
            max_offer_m_lines: count(l.max_offer_m_lines),
            max_remote_candidates: count(l.max_remote_candidates),
            max_peers: count(l.max_peers),
            max_peers_per_source: count(l.max_peers_per_source),
            max_connecting_peers: count(l.max_connecting_peers),
            max_connecting_peers_per_source: count(l.max_connecting_peers_per_source),
        };
        // SAFETY: checked non-NULL; the caller guarantees it is writable.
        unsafe { cfg.write(c) };
        Ok(())
    })
}

/// # Safety
/// The string pointers in `c` are NULL or NUL-terminated.
unsafe fn from_c_server_config(c: &SwrtcServerConfig) -> Result<ServerConfig, Error> {
    let mut cfg = ServerConfig::default();
    // SAFETY (all cstr_opt calls): forwarded from the caller's guarantee.
    if let Some(a) = unsafe { cstr_opt(c.addr, "addr") }? {
        cfg.addr = a
            .trim()
            .parse::<SocketAddr>()
            .map_err(|_| Error::invalid(format!("addr {a:?} is not IP:PORT")))?;
    }
    // SAFETY: as above.
    cfg.peer = unsafe { from_c_config(&c.peer) }?;
    cfg.mode = if c.single_connection {
        ConnectionMode::Single
    } else {
        ConnectionMode::Multiple
    };
    cfg.esp32 = c.esp32;
    // SAFETY: as above.
    if let Some(h) = unsafe { cstr_opt(c.esp32_host, "esp32_host") }? {
        cfg.esp32_host = Some(
            h.trim()
                .parse()
                .map_err(|_| Error::invalid(format!("esp32_host {h:?} is not an IP address")))?,
        );
    }
    // SAFETY: as above.
    if let Some(j) = unsafe { cstr_opt(c.ice_servers_json, "ice_servers_json") }? {
        cfg.ice_servers = super::runtime::parse_ice_servers(j, "ice_servers_json")?;
    }
    cfg.max_body = c.max_body;
    cfg.http_threads = c.http_threads as usize;
    // SAFETY: as above.
    if let Some(n) = unsafe { cstr_opt(c.pc_id_name, "pc_id_name") }? {
        cfg.pc_id_name = n.to_owned();
    }
    cfg.serve_page = c.serve_page;
    let ms = |v: u32| Duration::from_millis(v.into());
    let n = |v: u32| v as usize;
    cfg.limits = ServerLimits {
        head_timeout: ms(c.http_head_timeout_ms),
        body_timeout: ms(c.http_body_timeout_ms),
        idle_timeout: ms(c.http_idle_timeout_ms),
        write_timeout: ms(c.http_write_timeout_ms),
        max_headers: n(c.max_headers),
        max_head_bytes: n(c.max_head_bytes),
        max_connections: n(c.max_connections),
        max_connections_per_source: n(c.max_connections_per_source),
        max_offer_m_lines: n(c.max_offer_m_lines),
        max_remote_candidates: n(c.max_remote_candidates),
        max_peers: n(c.max_peers),
        max_peers_per_source: n(c.max_peers_per_source),
        max_connecting_peers: n(c.max_connecting_peers),
        max_connecting_peers_per_source: n(c.max_connecting_peers_per_source),
    };
    // Zeros (a config not filled from the defaults) are refused here, with the field name.
    cfg.limits.validate()?;
    Ok(cfg)
}

/// Starts a signalling server on `cfg->addr` for peers on runtime `rt` (NULL: the default
/// runtime). `cfg` NULL means defaults. With `callbacks` NULL or its `on_peer` NULL, new
/// peers wait for `swrtc_server_accept`. On success `*out` owns the server: free it with
/// `swrtc_server_free`.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL `out`, bad address or settings),
/// `SWRTC_ERR_IO` (address in use). Any thread.
///
/// # Safety
/// `rt` NULL or live; `cfg` NULL or valid with valid strings; `callbacks` NULL or valid
/// (copied); `out` valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn swrtc_server_new(
    rt: *const SwrtcRuntime,
    cfg: *const SwrtcServerConfig,
    callbacks: *const SwrtcServerCallbacks,
    out: *mut *mut SwrtcServer,
) -> SwrtcResult {
    guard(|| {
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        // SAFETY: NULL or valid per the contract.
        let mut config = match unsafe { cfg.as_ref() } {
            // SAFETY: forwarded contract on the strings inside.
            Some(c) => unsafe { from_c_server_config(c) }?,
            None => ServerConfig::default(),
        };
        // SAFETY: NULL or a live runtime per the contract.
        config.runtime = Some(match unsafe { rt.as_ref() } {
            Some(r) => r.rt.clone(),
            None => Runtime::global()?,
        });
        // SAFETY: NULL or valid per the contract; copied.
        let target = unsafe { callbacks.as_ref() }.map(|c| Arc::new(CallbackTarget(*c)));
        let on_peer = target.as_ref().filter(|t| t.0.on_peer.is_some()).map(|t| {
            let t = t.clone();
            Arc::new(move |new: NewPeer| t.deliver(new)) as crate::signalling::OnPeer
        });
        config.access = target.filter(|t| t.0.on_access.is_some()).map(|t| {
            Arc::new(move |r: &AccessRequest<'_>| t.access(r)) as crate::signalling::AccessHook
        });
        let server = Server::start(config, on_peer)?;
        // SAFETY: checked non-NULL.
        unsafe { out.write(Box::into_raw(Box::new(SwrtcServer { server }))) };
        Ok(())
    })
}

/// Takes the next new peer (for servers without `on_peer`), waiting up to `timeout_ms`
/// (0: do not wait). On success `*peer_out` belongs to the app (free with
/// `swrtc_peer_free`; pull its events with `swrtc_peer_poll_event`), and, when those
/// pointers are not NULL, `*pc_id_out` and `*request_data_out` (JSON, "null" if none) are
/// strings to free with `swrtc_string_free`. Outputs are written only on success.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT`, `SWRTC_ERR_WOULD_BLOCK` (none, timeout 0),
/// `SWRTC_ERR_TIMEOUT`. Any thread; each peer goes to one caller.
///
/// # Safety
/// `server` live; `peer_out` valid for one pointer write; the string outputs NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn swrtc_server_accept(
    server: *const SwrtcServer,
    timeout_ms: u32,
    peer_out: *mut *mut SwrtcPeer,
    pc_id_out: *mut *mut c_char,
    request_data_out: *mut *mut c_char,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: NULL or live per the contract.
        let s = unsafe { server.as_ref() }.ok_or_else(|| Error::invalid("server is NULL"))?;
        if peer_out.is_null() {
            return Err(Error::invalid("peer_out is NULL"));
        }
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms.into()));
        let Some(new) = s.server.accept(timeout) else {
            return Err(if timeout.is_some() {
                Error::new(ErrorKind::Timeout, "no new peer within the timeout")
            } else {
                Error::new(ErrorKind::WouldBlock, "no new peer waiting")
            });
        };
        let pc_id = CString::new(new.pc_id).unwrap_or_default();
        let data = CString::new(new.request_data.to_string()).unwrap_or_default();
        // SAFETY: peer_out checked non-NULL; the string outputs are NULL or writable.
        unsafe {
            peer_out.write(Box::into_raw(Box::new(SwrtcPeer::from_shared(
                new.peer,
                c_protocol(new.protocol),
            ))));
            if !pc_id_out.is_null() {
                pc_id_out.write(pc_id.into_raw());
            }
            if !request_data_out.is_null() {
                request_data_out.write(data.into_raw());
            }
        }
        Ok(())
    })
}

/// The TCP port the server listens on (useful after starting on port 0).
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT`. Any thread, callbacks too.
///
/// # Safety
/// `server` live; `port_out` writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_server_local_port(
    server: *const SwrtcServer,
    port_out: *mut u16,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: NULL or live per the contract.
        let s = unsafe { server.as_ref() }.ok_or_else(|| Error::invalid("server is NULL"))?;
        if port_out.is_null() {
            return Err(Error::invalid("port_out is NULL"));
        }
        // SAFETY: checked non-NULL.
        unsafe { port_out.write(s.server.local_addr().port()) };
        Ok(())
    })
}

/// Graceful shutdown: stops listening (waits for requests in progress), then says goodbye
/// to every live peer this server created (`peerLeft`, SCTP shutdown, DTLS close_notify)
/// so their clients notice at once. Returns within `timeout_ms` plus the time requests in
/// progress take. `closed_out` (may be NULL) gets how many peers were closed with their
/// goodbyes sent. Peers the app holds stay valid (state `SWRTC_PEER_CLOSED`; their
/// `on_state` gets it); free them and the server as usual afterwards. Idempotent.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL server). Any thread except the server's own
/// `on_peer` and peer callbacks (it waits for the threads those run on).
///
/// # Safety
/// `server` is NULL or a live server from `swrtc_server_new`, not used by another thread's
/// `swrtc_server_free` at the same time; `closed_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_server_shutdown(
    server: *mut SwrtcServer,
    timeout_ms: u32,
    closed_out: *mut u32,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: NULL or live and not shared per the contract.
        let s = unsafe { server.as_mut() }.ok_or_else(|| Error::invalid("server is NULL"))?;
        let n = s
            .server
            .shutdown(Duration::from_millis(u64::from(timeout_ms)));
        if !closed_out.is_null() {
            // SAFETY: checked non-NULL; writable per the contract.
            unsafe { closed_out.write(n as u32) };
        }
        Ok(())
    })
}

/// Stops the server: stops listening and closes every HTTP connection at once (a client
/// stalled mid-request holds nothing), waits for the requests handler threads have (an
/// `on_peer` call in progress on another thread finishes first; a route takes at most
/// the 5 s command timeout besides it), and frees it. Peers the app holds live
/// on; peers not yet accepted are closed. NULL does nothing. Any thread, once per server;
/// from inside `on_peer` it returns without waiting for that call's own request.
///
/// # Safety
/// `server` is NULL or a server from `swrtc_server_new`, not used again after this call.
#[no_mangle]
pub unsafe extern "C" fn swrtc_server_free(server: *mut SwrtcServer) {
    let _ = guard(|| {
        if !server.is_null() {
            // SAFETY: from Box::into_raw in swrtc_server_new; freed once per the contract.
            drop(unsafe { Box::from_raw(server) });
        }
        Ok(())
    });
}
