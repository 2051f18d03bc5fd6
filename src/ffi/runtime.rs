//! C ABI of runtimes: optional, for apps that want their own threads instead of the
//! process-wide default.

use std::ffi::c_char;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::Value;

use crate::config::{IceServer, RuntimeConfig};
use crate::runtime::Runtime;

use super::{cstr_opt, guard, invalid, SwrtcResult};

/// A set of library threads (I/O threads, a callback thread). Opaque.
pub struct SwrtcRuntime {
    pub(crate) rt: Runtime,
}

/// Settings of a runtime. Fill with `swrtc_runtime_config_default` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SwrtcRuntimeConfig {
    /// I/O threads (1..=64). Default 1; one thread serves hundreds of peers.
    pub io_threads: u32,
    /// Codec worker threads; 0 means one per core. Default 0.
    pub worker_threads: u32,
    /// One UDP port for every peer of this runtime. Default false: each peer binds its own
    /// socket(s) (its `bind_ip`, `port_min`, `port_max`). True: the runtime binds
    /// `udp_ip`:`udp_port` once and every peer shares it (those peer fields are then
    /// ignored, and all peers live on the first I/O thread); clients are told apart by
    /// their ICE ufrag, then by their address once a check from it is authenticated. See
    /// `swrtc_runtime_stats` for what it drops.
    pub udp_shared: bool,
    /// IP of the shared socket (NUL-terminated, copied), or NULL for every non-loopback
    /// IPv4 interface (one socket each, same port). Used only with `udp_shared`.
    pub udp_ip: *const c_char,
    /// Port of the shared socket (0: any free port). Used only with `udp_shared`.
    pub udp_port: u16,
    /// ICE over TCP for clients whose UDP is blocked. Default false. True: the runtime
    /// listens on `tcp_ip`:`tcp_port` and every peer's answer also offers a passive TCP
    /// candidate there (all peers then live on the first I/O thread). Connections are
    /// routed to peers by their first authenticated STUN check; see `swrtc_runtime_stats`
    /// for what is refused and dropped.
    pub tcp_enabled: bool,
    /// IP to listen on for ICE-TCP (NUL-terminated, copied), or NULL for every interface
    /// (each peer then offers its own interface addresses). Used only with `tcp_enabled`.
    pub tcp_ip: *const c_char,
    /// ICE-TCP port (0: any free port). Used only with `tcp_enabled`.
    pub tcp_port: u16,
    /// STUN/TURN servers for the runtime's own sockets, as a JSON array of
    /// `RTCIceServer`s (`[{"urls":["stun:host:3478"]}]`, `urls` a string or an array,
    /// `username`/`credential` optional), NUL-terminated and copied; NULL: none. From each
    /// `stun:` URL the I/O thread learns the sockets' public address and offers it as a
    /// server-reflexive candidate (no `public_ip` needed behind a NAT); from each `turn:`
    /// URL over UDP (`username` and `credential` required) each peer's own sockets get a
    /// relay, offered as a relay candidate and deleted when the peer closes. Host names are
    /// looked up once on a thread of their own. `turns:` and TCP URLs are checked but not
    /// used yet. Bad JSON or URLs fail `swrtc_runtime_new`; a dead server is counted in
    /// `swrtc_runtime_stats`, never a failed offer.
    pub ice_servers_json: *const c_char,
    /// Longest a peer's first answer waits for its server-reflexive addresses and relays
    /// (ms, 0..=4000). Default 1000. Only with `stun:`/`turn:` servers.
    pub gather_timeout_ms: u32,
}

/// Counters of a runtime's shared UDP socket (all zero without `udp_shared`) and ICE-TCP
/// port.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SwrtcRuntimeStats {
    /// STUN checks from an unbound address naming no live peer's ICE ufrag: dropped.
    pub udp_dropped_unknown_ufrag: u64,
    /// Other datagrams from an address bound to no peer: dropped.
    pub udp_dropped_unbound: u64,
    /// Client addresses bound to a peer now.
    pub udp_bindings: u64,
    /// Bindings dropped (idle 30 s, or over the bound of 4 per peer / 4096 per runtime);
    /// a client still there is bound again by its next check.
    pub udp_bindings_evicted: u64,
    /// ICE-TCP connections open now (all ICE-TCP counters are zero without `tcp_enabled`).
    pub tcp_connections: u64,
    /// ICE-TCP connections accepted since the start.
    pub tcp_accepted: u64,
    /// ICE-TCP connections closed at once: over 1024 in total or 32 from one IP.
    pub tcp_refused: u64,
    /// ICE-TCP connections closed for sending no authenticated check within 5 s.
    pub tcp_check_timeouts: u64,
    /// ICE-TCP connections closed whose first check named no live peer's ICE ufrag.
    pub tcp_unknown_ufrag: u64,
    /// ICE-TCP connections closed for a bad frame (over 2000 bytes; not a STUN check
    /// before the connection was bound; repeated checks failing their integrity check).
    pub tcp_bad_frames: u64,
    /// Frames received on ICE-TCP connections and handed to a peer.
    pub tcp_frames_in: u64,
    /// Frames sent on ICE-TCP connections.
    pub tcp_frames_out: u64,
    /// Frames dropped on the way out: the connection's 64 KiB write buffer was full, or
    /// no connection to that address.
    pub tcp_frames_dropped: u64,
    /// STUN binding transactions started toward the `stun:` servers.
    pub stun_requests: u64,
    /// STUN answers that told us a server-reflexive address.
    pub stun_responses: u64,
    /// STUN transactions no answer came for (a dead or unreachable server).
    pub stun_timeouts: u64,
    /// STUN error answers, answers without an address, names that did not resolve.
    pub stun_errors: u64,
    /// First answers sent when the gather timeout ran out before the STUN servers answered.
    pub stun_answers_without_srflx: u64,
    /// TURN relay allocations made (one per peer socket and `turn:` server).
    pub turn_relays: u64,
    /// Receive syscalls on the shared UDP sockets (each reads up to 32 datagrams).
    pub udp_recv_calls: u64,
    /// Datagrams read from the shared UDP sockets.
    pub udp_datagrams_in: u64,
    /// Receive calls on the shared UDP sockets that failed (ICMP errors, mostly).
    pub udp_recv_errors: u64,
    /// Send syscalls on the shared UDP sockets (one carries many datagrams).
    pub udp_send_calls: u64,
    /// Datagrams sent from the shared UDP sockets.
    pub udp_datagrams_out: u64,
    /// Datagrams not sent from the shared UDP sockets: full socket buffer or a send error.
    pub udp_send_dropped: u64,
}

/// Fills `cfg` with the defaults.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` if `cfg` is NULL. Any thread.
///
/// # Safety
/// `cfg` is NULL or points to writable memory for one `SwrtcRuntimeConfig`.
#[no_mangle]
pub unsafe extern "C" fn swrtc_runtime_config_default(cfg: *mut SwrtcRuntimeConfig) -> SwrtcResult {
    if cfg.is_null() {
        return invalid("cfg is NULL");
    }
    guard(|| {
        let d = RuntimeConfig::default();
        // SAFETY: checked non-NULL; the caller guarantees it is writable.
        unsafe {
            cfg.write(SwrtcRuntimeConfig {
                io_threads: d.io_threads as u32,
                worker_threads: d.worker_threads as u32,
                udp_shared: false,
                udp_ip: std::ptr::null(),
                udp_port: 0,
                tcp_enabled: false,
                tcp_ip: std::ptr::null(),
                tcp_port: 0,
                ice_servers_json: std::ptr::null(),
                gather_timeout_ms: d.gather_timeout.as_millis() as u32,
            })
        };
        Ok(())
    })
}

/// Starts a runtime. `cfg` NULL means defaults. On success `*out` owns it: free it with
/// `swrtc_runtime_free` (peers created on it keep it alive until they are freed too).
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL `out`, bad thread counts, bad `udp_ip` or
/// `tcp_ip`, bad `ice_servers_json` or URL, `gather_timeout_ms` over 4000), `SWRTC_ERR_IO`
/// (the shared UDP port or the ICE-TCP port is taken). Any thread.
///
/// # Safety
/// `cfg` is NULL or valid (its `udp_ip`, `tcp_ip` and `ice_servers_json` NULL or
/// NUL-terminated); `out` is valid for one
/// pointer write.
#[no_mangle]
pub unsafe extern "C" fn swrtc_runtime_new(
    cfg: *const SwrtcRuntimeConfig,
    out: *mut *mut SwrtcRuntime,
) -> SwrtcResult {
    if out.is_null() {
        return invalid("out is NULL");
    }
    guard(|| {
        let mut rc = RuntimeConfig::default();
        // SAFETY: NULL was checked; the caller guarantees validity otherwise.
        if let Some(c) = unsafe { cfg.as_ref() } {
            rc.io_threads = c.io_threads as usize;
            rc.worker_threads = c.worker_threads as usize;
            if c.udp_shared {
                // SAFETY: NULL or NUL-terminated per the contract.
                let ip = match unsafe { cstr_opt(c.udp_ip, "udp_ip") }? {
                    None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    Some(s) => s.trim().parse().map_err(|_| {
                        crate::Error::invalid(format!("udp_ip {s:?} is not an IP address"))
                    })?,
                };
                rc.udp_addr = Some(SocketAddr::new(ip, c.udp_port));
            }
            if c.tcp_enabled {
                // SAFETY: NULL or NUL-terminated per the contract.
                let ip = match unsafe { cstr_opt(c.tcp_ip, "tcp_ip") }? {
                    None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    Some(s) => s.trim().parse().map_err(|_| {
                        crate::Error::invalid(format!("tcp_ip {s:?} is not an IP address"))
                    })?,
                };
                rc.tcp_addr = Some(SocketAddr::new(ip, c.tcp_port));
            }
            // SAFETY: NULL or NUL-terminated per the contract.
            if let Some(j) = unsafe { cstr_opt(c.ice_servers_json, "ice_servers_json") }? {
                rc.ice_servers = parse_ice_servers(j, "ice_servers_json")?;
            }
            rc.gather_timeout = std::time::Duration::from_millis(u64::from(c.gather_timeout_ms));
        }
        let rt = Runtime::new(rc)?;
        // SAFETY: checked non-NULL above.
        unsafe { out.write(Box::into_raw(Box::new(SwrtcRuntime { rt }))) };
        Ok(())
    })
}

/// Graceful shutdown of every peer on the runtime: each live one gets `peerLeft`, then
/// SCTP shutdown and DTLS close_notify, so its client notices at once. Returns once every
/// I/O thread has sent them, or after `timeout_ms` at the latest. `closed_out` (may be
/// NULL) gets how many peers were closed. Peers stay valid (state `SWRTC_PEER_CLOSED`;
/// their `on_state` gets it) and the runtime stays usable; free both as usual.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL runtime). Any thread except inside a
/// callback of a peer on this runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime from `swrtc_runtime_new`; `closed_out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_runtime_shutdown(
    rt: *const SwrtcRuntime,
    timeout_ms: u32,
    closed_out: *mut u32,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: NULL or live per the contract.
        let r = unsafe { rt.as_ref() }.ok_or_else(|| crate::Error::invalid("rt is NULL"))?;
        let n =
            r.rt.shutdown(std::time::Duration::from_millis(u64::from(timeout_ms)));
        if !closed_out.is_null() {
            // SAFETY: checked non-NULL; writable per the contract.
            unsafe { closed_out.write(n as u32) };
        }
        Ok(())
    })
}

/// Reads the counters of the runtime's shared UDP socket and ICE-TCP port into `*out`.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL `rt` or `out`). Any thread, also inside
/// callbacks (it reads atomics only).
///
/// # Safety
/// `rt` is NULL or a live runtime; `out` is NULL or writable for one `SwrtcRuntimeStats`.
#[no_mangle]
pub unsafe extern "C" fn swrtc_runtime_stats(
    rt: *const SwrtcRuntime,
    out: *mut SwrtcRuntimeStats,
) -> SwrtcResult {
    if out.is_null() {
        return invalid("out is NULL");
    }
    guard(|| {
        // SAFETY: NULL or live per the contract.
        let r = unsafe { rt.as_ref() }.ok_or_else(|| crate::Error::invalid("rt is NULL"))?;
        let s = r.rt.stats();
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe {
            out.write(SwrtcRuntimeStats {
                udp_dropped_unknown_ufrag: s.udp_dropped_unknown_ufrag,
                udp_dropped_unbound: s.udp_dropped_unbound,
                udp_bindings: s.udp_bindings,
                udp_bindings_evicted: s.udp_bindings_evicted,
                tcp_connections: s.tcp_connections,
                tcp_accepted: s.tcp_accepted,
                tcp_refused: s.tcp_refused,
                tcp_check_timeouts: s.tcp_check_timeouts,
                tcp_unknown_ufrag: s.tcp_unknown_ufrag,
                tcp_bad_frames: s.tcp_bad_frames,
                tcp_frames_in: s.tcp_frames_in,
                tcp_frames_out: s.tcp_frames_out,
                tcp_frames_dropped: s.tcp_frames_dropped,
                stun_requests: s.stun_requests,
                stun_responses: s.stun_responses,
                stun_timeouts: s.stun_timeouts,
                stun_errors: s.stun_errors,
                stun_answers_without_srflx: s.stun_answers_without_srflx,
                turn_relays: s.turn_relays,
                udp_recv_calls: s.udp_recv_calls,
                udp_datagrams_in: s.udp_datagrams_in,
                udp_recv_errors: s.udp_recv_errors,
                udp_send_calls: s.udp_send_calls,
                udp_datagrams_out: s.udp_datagrams_out,
                udp_send_dropped: s.udp_send_dropped,
            })
        };
        Ok(())
    })
}

/// Releases the app's reference to a runtime. NULL does nothing. Its threads stop once
/// no peer uses it any more. Do not call from a callback of a peer on this runtime.
///
/// # Safety
/// `rt` is NULL or a runtime from `swrtc_runtime_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn swrtc_runtime_free(rt: *mut SwrtcRuntime) {
    let _ = guard(|| {
        if !rt.is_null() {
            // SAFETY: the caller passes a pointer from Box::into_raw, freed once.
            drop(unsafe { Box::from_raw(rt) });
        }
        Ok(())
    });
}

/// `[{"urls": "stun:…" | ["…"], "username": "…", "credential": "…"}, …]` (the browser's
/// `RTCIceServer` list), for the runtime's and the signalling server's C configs. The
/// URLs themselves are checked where they are used (`Runtime::new`).
pub(crate) fn parse_ice_servers(json: &str, field: &str) -> Result<Vec<IceServer>, crate::Error> {
    let bad = |why: &str| crate::Error::invalid(format!("{field}: {why}"));
    let v: Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    let list = v.as_array().ok_or_else(|| bad("not a JSON array"))?;
    list.iter()
        .map(|s| {
            let urls = match &s["urls"] {
                Value::String(u) => vec![u.clone()],
                Value::Array(a) => a
                    .iter()
                    .map(|u| {
                        u.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad("urls must be strings"))
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(bad("each server needs \"urls\"")),
            };
            let text = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_owned);
            Ok(IceServer {
                urls,
                username: text("username"),
                credential: text("credential"),
            })
        })
        .collect()
}
