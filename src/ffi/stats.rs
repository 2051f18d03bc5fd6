//! C ABI of network stats: a fixed struct (`swrtc_peer_get_network_stats`) and the whole
//! report as JSON (`swrtc_peer_get_stats_json`). Added beside `SwrtcPeerStats`, which
//! stays as it was for ABI compatibility.

use std::ffi::c_char;
use std::net::SocketAddr;

use crate::error::{Error, ErrorKind};
use crate::session::{CandidateType, NetworkStats, TransportProtocol};

use super::peer::{peer_ref, SwrtcPeer};
use super::{guard, SwrtcResult};

/// Bytes of an address field (spelled out in the struct for the C header): the longest
/// "[ipv6%scope]:port" fits with its NUL.
const ADDRESS_LEN: usize = 64;

/// The type of an ICE candidate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwrtcCandidateType {
    /// No pair selected yet.
    SWRTC_CANDIDATE_UNKNOWN = 0,
    /// A local interface's address.
    SWRTC_CANDIDATE_HOST = 1,
    /// The address a STUN server saw, or the configured 1:1 NAT address.
    SWRTC_CANDIDATE_SRFLX = 2,
    /// Learned from a connectivity check (announced in no candidate).
    SWRTC_CANDIDATE_PRFLX = 3,
    /// A TURN relay's address.
    SWRTC_CANDIDATE_RELAY = 4,
}

/// The transport of the selected candidate pair.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwrtcTransport {
    /// No pair selected yet.
    SWRTC_TRANSPORT_UNKNOWN = 0,
    /// UDP.
    SWRTC_TRANSPORT_UDP = 1,
    /// TCP.
    SWRTC_TRANSPORT_TCP = 2,
}

/// Network stats of a peer, measured once per second while connected. "In" is from the
/// client, "out" to it. A value not measured yet is -1 (the doubles) and the pair fields
/// are UNKNOWN and "" until ICE selected a pair.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SwrtcNetworkStats {
    /// Stats reports taken so far (0: nothing measured yet).
    pub reports: u64,
    /// Round-trip time in ms (latest ICE check on the selected pair, else RTCP), or -1.
    pub rtt_ms: f64,
    /// Jitter of the client's audio as we measure it, ms, or -1.
    pub jitter_in_ms: f64,
    /// Jitter of our audio as the client reports it, ms, or -1.
    pub jitter_out_ms: f64,
    /// Fraction (0..1) of the client's packets lost since the previous report, or -1.
    pub loss_in: f64,
    /// Fraction (0..1) of our packets lost, as the client reports it, or -1.
    pub loss_out: f64,
    /// Bits per second received over about the last 3 s.
    pub bitrate_in_bps: u64,
    /// Bits per second sent over about the last 3 s.
    pub bitrate_out_bps: u64,
    /// Bytes received (DTLS, SRTP, SRTCP; STUN not counted).
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// RTP packets received, all tracks.
    pub packets_in: u64,
    /// RTP packets sent, all tracks.
    pub packets_out: u64,
    /// Our candidate's type in the selected pair.
    pub local_candidate_type: SwrtcCandidateType,
    /// The client's candidate's type in the selected pair.
    pub remote_candidate_type: SwrtcCandidateType,
    /// UDP or TCP.
    pub transport: SwrtcTransport,
    /// Our address in the pair, "ip:port" (`"[ip]:port"` for IPv6), NUL-terminated.
    pub local_address: [c_char; 64],
    /// The client's address in the pair, NUL-terminated.
    pub remote_address: [c_char; 64],
    /// The bandwidth estimate toward the client (bit/s, all media: our transport-cc
    /// estimate or the client's REMB, the lower), or 0 if none (no video out, or the
    /// client sends neither).
    pub bandwidth_estimate_bps: u64,
    /// The video encoder's target bitrate (bit/s): the configured one, lowered to what the
    /// estimate leaves for video; 0 before video is encoded.
    pub video_target_bps: u64,
}

fn candidate(t: CandidateType) -> SwrtcCandidateType {
    match t {
        CandidateType::Host => SwrtcCandidateType::SWRTC_CANDIDATE_HOST,
        CandidateType::Srflx => SwrtcCandidateType::SWRTC_CANDIDATE_SRFLX,
        CandidateType::Prflx => SwrtcCandidateType::SWRTC_CANDIDATE_PRFLX,
        CandidateType::Relay => SwrtcCandidateType::SWRTC_CANDIDATE_RELAY,
    }
}

fn address(a: Option<SocketAddr>) -> [c_char; ADDRESS_LEN] {
    let mut out = [0 as c_char; ADDRESS_LEN];
    if let Some(a) = a {
        let text = a.to_string();
        for (o, b) in out.iter_mut().zip(text.bytes().take(ADDRESS_LEN - 1)) {
            *o = b as c_char;
        }
    }
    out
}

fn to_c(n: &NetworkStats) -> SwrtcNetworkStats {
    let pair = n.selected_pair.as_ref();
    SwrtcNetworkStats {
        reports: n.reports,
        rtt_ms: n.rtt_ms.unwrap_or(-1.0),
        jitter_in_ms: n.jitter_in_ms.unwrap_or(-1.0),
        jitter_out_ms: n.jitter_out_ms.unwrap_or(-1.0),
        loss_in: n.loss_in.map_or(-1.0, f64::from),
        loss_out: n.loss_out.map_or(-1.0, f64::from),
        bitrate_in_bps: n.bitrate_in_bps,
        bitrate_out_bps: n.bitrate_out_bps,
        bytes_in: n.bytes_in,
        bytes_out: n.bytes_out,
        packets_in: n.packets_in,
        packets_out: n.packets_out,
        local_candidate_type: pair.map_or(SwrtcCandidateType::SWRTC_CANDIDATE_UNKNOWN, |p| {
            candidate(p.local_type)
        }),
        remote_candidate_type: pair.map_or(SwrtcCandidateType::SWRTC_CANDIDATE_UNKNOWN, |p| {
            candidate(p.remote_type)
        }),
        transport: match pair.map(|p| p.protocol) {
            None => SwrtcTransport::SWRTC_TRANSPORT_UNKNOWN,
            Some(TransportProtocol::Udp) => SwrtcTransport::SWRTC_TRANSPORT_UDP,
            Some(TransportProtocol::Tcp) => SwrtcTransport::SWRTC_TRANSPORT_TCP,
        },
        local_address: address(pair.map(|p| p.local_address)),
        remote_address: address(pair.map(|p| p.remote_address)),
        bandwidth_estimate_bps: n.bandwidth_estimate_bps.unwrap_or(0),
        video_target_bps: n.video_target_bps.unwrap_or(0),
    }
}

/// The peer's network stats: RTT, jitter, loss, bitrate, bytes, packets, candidate pair.
///
/// Thread-safety: any thread, callbacks too (one round trip to the peer's I/O thread).
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT`, `SWRTC_ERR_CLOSED` (peer already gone).
///
/// # Safety
/// `peer` live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_get_network_stats(
    peer: *const SwrtcPeer,
    out: *mut SwrtcNetworkStats,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let c = to_c(&p.network_stats()?);
        // SAFETY: checked non-NULL.
        unsafe { out.write(c) };
        Ok(())
    })
}

/// Everything the peer counts and measures as one JSON object (UTF-8, NUL-terminated):
/// `state`, `network`, `session`, `audio`, `video`, `events_dropped`; the README lists
/// the fields. Unmeasured values are `null`.
///
/// `buf` NULL (with `cap` 0) asks for the size: `*len` gets the bytes needed without the
/// NUL and the call returns `SWRTC_OK`. Otherwise the JSON and a NUL are written if
/// `cap` holds them (`cap >= *len + 1`); if not, `*len` gets the needed length, nothing
/// is written and the call returns `SWRTC_ERR_BUFFER_TOO_SMALL`. The stats move between
/// calls, so leave some room (the JSON is under 2 KB).
///
/// Thread-safety: any thread, callbacks too (one round trip to the peer's I/O thread).
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (`peer` or `len` NULL, `buf` NULL with `cap` > 0),
/// `SWRTC_ERR_BUFFER_TOO_SMALL`, `SWRTC_ERR_CLOSED`.
///
/// # Safety
/// `peer` live; `buf` NULL or writable for `cap` bytes; `len` writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_peer_get_stats_json(
    peer: *const SwrtcPeer,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: contract.
        let p = unsafe { peer_ref(peer) }?;
        if len.is_null() {
            return Err(Error::invalid("len is NULL"));
        }
        if buf.is_null() && cap > 0 {
            return Err(Error::invalid("buf is NULL but cap is not 0"));
        }
        let json = p.stats_json()?;
        // SAFETY: checked non-NULL.
        unsafe { len.write(json.len()) };
        if buf.is_null() {
            return Ok(());
        }
        if cap < json.len() + 1 {
            return Err(Error::new(
                ErrorKind::BufferTooSmall,
                format!("the stats JSON needs {} bytes and a NUL", json.len()),
            ));
        }
        // SAFETY: `buf` holds `cap` >= len + 1 bytes (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(json.as_ptr(), buf as *mut u8, json.len());
            buf.add(json.len()).write(0);
        }
        Ok(())
    })
}
