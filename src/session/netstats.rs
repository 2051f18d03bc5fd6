//! Network stats of one session for operators: RTT, jitter, loss, bitrate each way and the
//! selected candidate pair. Folded from str0m's stats events, which come once per stats
//! interval (1 s), so nothing here runs per packet.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::bwe::BweKind;
use str0m::media::Mid;
use str0m::net::Protocol;
use str0m::stats::{MediaEgressStats, MediaIngressStats, PeerStats};
use str0m::{Candidate, CandidateKind};

/// Candidates remembered per side, for telling the selected pair's candidate types apart.
/// A peer has a handful; past this a remote one is no longer remembered (and a pair on it
/// would read as `prflx`).
const MAX_CANDIDATES: usize = 64;

/// Stats reports the bitrate is averaged over (one per second: about a 3 s window).
const BITRATE_REPORTS: usize = 4;

/// Opus' RTP clock, to turn jitter in timestamp units into time.
const AUDIO_CLOCK_HZ: f64 = 48_000.0;

/// The type of an ICE candidate (RFC 8445).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CandidateType {
    /// An address of a local interface.
    Host,
    /// The address a STUN server saw (or the configured 1:1 NAT address).
    Srflx,
    /// Learned from a connectivity check: not announced in any candidate.
    Prflx,
    /// A TURN relay's address.
    Relay,
}

impl From<CandidateKind> for CandidateType {
    fn from(k: CandidateKind) -> Self {
        match k {
            CandidateKind::Host => CandidateType::Host,
            CandidateKind::ServerReflexive => CandidateType::Srflx,
            CandidateKind::PeerReflexive => CandidateType::Prflx,
            CandidateKind::Relayed => CandidateType::Relay,
        }
    }
}

/// The transport protocol of a candidate pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportProtocol {
    /// UDP.
    Udp,
    /// TCP (also TCP with an SSL hello and TLS, which str0m only uses via a relay).
    Tcp,
}

/// The candidate pair media flows on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CandidatePair {
    /// Our candidate's type.
    pub local_type: CandidateType,
    /// The client's candidate's type.
    pub remote_type: CandidateType,
    /// UDP or TCP.
    pub protocol: TransportProtocol,
    /// The local socket address datagrams leave from.
    pub local_address: SocketAddr,
    /// The client's address datagrams go to.
    pub remote_address: SocketAddr,
}

/// Network stats of a peer. "In" is from the client to us, "out" from us to the client.
/// Updated once per second while connected; `None` means not measured yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetworkStats {
    /// Stats reports folded in so far (0: nothing measured yet).
    pub reports: u64,
    /// Round-trip time (ms): of the latest ICE check on the selected pair, else from RTCP.
    pub rtt_ms: Option<f64>,
    /// Interarrival jitter of the client's audio as we measure it (ms).
    pub jitter_in_ms: Option<f64>,
    /// Interarrival jitter of our audio as the client reports it (ms).
    pub jitter_out_ms: Option<f64>,
    /// Fraction (0..1) of the client's RTP packets lost since the previous report.
    pub loss_in: Option<f32>,
    /// Fraction (0..1) of our RTP packets lost, as the client reports it.
    pub loss_out: Option<f32>,
    /// Bits per second received, over about the last 3 s (DTLS, SRTP, SRTCP; not STUN).
    pub bitrate_in_bps: u64,
    /// Bits per second sent, over about the last 3 s.
    pub bitrate_out_bps: u64,
    /// Bytes received (DTLS, SRTP and SRTCP datagrams).
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// RTP packets received, all tracks.
    pub packets_in: u64,
    /// RTP packets sent, all tracks.
    pub packets_out: u64,
    /// The candidate pair in use, once ICE selected one.
    pub selected_pair: Option<CandidatePair>,
    /// The bandwidth estimate toward the client (bit/s, all media): the lower of our
    /// transport-cc estimate and the client's REMB, whichever it sends. Only with video out.
    pub bandwidth_estimate_bps: Option<u64>,
    /// The video encoder's target bitrate (bit/s): the configured one, lowered to what
    /// the estimate leaves for video. `None` before video is encoded.
    pub video_target_bps: Option<u64>,
}

/// Folds str0m's stats events into [`NetworkStats`].
#[derive(Debug, Default)]
pub(super) struct NetStatsTracker {
    stats: NetworkStats,
    local: Vec<Candidate>,
    remote: Vec<Candidate>,
    /// (when, bytes in, bytes out) of the last few reports, for the bitrate.
    window: VecDeque<(Instant, u64, u64)>,
    /// Cumulative (bytes, packets) per mid, each way.
    ingress: Vec<(Mid, u64)>,
    egress: Vec<(Mid, u64)>,
    /// The latest transport-cc estimate and REMB (bit/s).
    twcc_bps: Option<u64>,
    remb_bps: Option<u64>,
}

impl NetStatsTracker {
    pub fn stats(&self) -> &NetworkStats {
        &self.stats
    }

    /// Remembers the `a=candidate` lines of an SDP (ours from the answer, the client's
    /// from the offer).
    pub fn note_sdp_candidates(&mut self, sdp: &str, local: bool) {
        for line in sdp.lines() {
            if let Some(text) = line.trim().strip_prefix("a=") {
                if text.starts_with("candidate:") {
                    if let Ok(c) = Candidate::from_sdp_string(text) {
                        self.note_candidate(c, local);
                    }
                }
            }
        }
    }

    pub fn note_candidate(&mut self, c: Candidate, local: bool) {
        let list = if local {
            &mut self.local
        } else {
            &mut self.remote
        };
        if list.len() < MAX_CANDIDATES && !list.iter().any(|k| k.addr() == c.addr()) {
            list.push(c);
        }
    }

    /// A bandwidth estimate event. Returns the estimate to use (the lower of ours and the
    /// client's; 0 if neither is non-zero).
    pub fn on_estimate(&mut self, k: &BweKind) -> u64 {
        match k {
            BweKind::Twcc { estimate, .. } => self.twcc_bps = Some(estimate.as_u64()),
            BweKind::Remb { estimate, .. } => self.remb_bps = Some(estimate.as_u64()),
            _ => {}
        }
        let bps = [self.twcc_bps, self.remb_bps]
            .into_iter()
            .flatten()
            .filter(|b| *b > 0)
            .min();
        self.stats.bandwidth_estimate_bps = bps;
        bps.unwrap_or(0)
    }

    pub fn on_peer(&mut self, s: &PeerStats) {
        let n = &mut self.stats;
        n.reports += 1;
        n.bytes_in = s.peer_bytes_rx;
        n.bytes_out = s.peer_bytes_tx;
        n.loss_in = s.ingress_loss_fraction.or(n.loss_in);
        n.loss_out = s.egress_loss_fraction.or(n.loss_out);
        let ice_rtt = s
            .selected_candidate_pair
            .as_ref()
            .and_then(|p| p.current_round_trip_time);
        if let Some(rtt) = ice_rtt.or(s.rtt) {
            n.rtt_ms = Some(ms(rtt));
        }
        if self.window.len() == BITRATE_REPORTS {
            self.window.pop_front();
        }
        self.window
            .push_back((s.timestamp, s.peer_bytes_rx, s.peer_bytes_tx));
        if let (Some(a), Some(b)) = (self.window.front(), self.window.back()) {
            let secs = b.0.saturating_duration_since(a.0).as_secs_f64();
            if secs > 0.0 {
                n.bitrate_in_bps = (b.1.saturating_sub(a.1) as f64 * 8.0 / secs) as u64;
                n.bitrate_out_bps = (b.2.saturating_sub(a.2) as f64 * 8.0 / secs) as u64;
            }
        }
        n.selected_pair = s.selected_candidate_pair.as_ref().map(|p| CandidatePair {
            // Datagrams leave from a socket address: a host candidate's, or the base of
            // our 1:1 NAT srflx one, which is also announced as host.
            local_type: kind_of(&self.local, p.local.addr).unwrap_or(CandidateType::Host),
            // An address no candidate announced was learned from a check: peer-reflexive.
            remote_type: kind_of(&self.remote, p.remote.addr).unwrap_or(CandidateType::Prflx),
            protocol: match p.protocol {
                Protocol::Udp => TransportProtocol::Udp,
                _ => TransportProtocol::Tcp,
            },
            local_address: p.local.addr,
            remote_address: p.remote.addr,
        });
    }

    pub fn on_ingress(&mut self, s: &MediaIngressStats, audio: Option<Mid>) {
        if Some(s.mid) == audio {
            self.stats.jitter_in_ms = Some(s.jitter as f64 * 1000.0 / AUDIO_CLOCK_HZ);
        }
        self.stats.packets_in = fold(&mut self.ingress, s.mid, s.packets);
    }

    pub fn on_egress(&mut self, s: &MediaEgressStats, audio: Option<Mid>) {
        if Some(s.mid) == audio {
            if let Some(r) = &s.remote {
                self.stats.jitter_out_ms = Some(r.jitter as f64 * 1000.0 / AUDIO_CLOCK_HZ);
            }
        }
        if self.stats.rtt_ms.is_none() {
            self.stats.rtt_ms = s.rtt.map(ms);
        }
        self.stats.packets_out = fold(&mut self.egress, s.mid, s.packets);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn kind_of(list: &[Candidate], addr: SocketAddr) -> Option<CandidateType> {
    list.iter()
        .find(|c| c.addr() == addr)
        .map(|c| c.kind().into())
}

/// Sets the cumulative count of `mid` and returns the sum over all mids. A peer has at
/// most a few mids (3 media lines), so a list beats a map.
fn fold(per_mid: &mut Vec<(Mid, u64)>, mid: Mid, count: u64) -> u64 {
    if let Some(slot) = per_mid.iter_mut().find(|(m, _)| *m == mid) {
        slot.1 = count;
    } else if per_mid.len() < 8 {
        per_mid.push((mid, count));
    }
    per_mid.iter().map(|(_, c)| c).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::stats::{CandidatePairStats, CandidateStats};

    fn report(at: Instant, rx: u64, tx: u64, remote: SocketAddr) -> PeerStats {
        PeerStats {
            peer_bytes_rx: rx,
            peer_bytes_tx: tx,
            bytes_rx: 0,
            bytes_tx: 0,
            timestamp: at,
            bwe_tx: None,
            egress_loss_fraction: None,
            ingress_loss_fraction: Some(0.25),
            rtt: Some(Duration::from_millis(40)),
            selected_candidate_pair: Some(CandidatePairStats {
                protocol: Protocol::Udp,
                local: CandidateStats {
                    addr: "10.0.0.1:5000".parse().unwrap(),
                },
                remote: CandidateStats { addr: remote },
                current_round_trip_time: Some(Duration::from_micros(1500)),
                total_round_trip_time: Duration::ZERO,
                responses_received: 1,
            }),
        }
    }

    #[test]
    fn bitrate_is_averaged_over_the_last_reports_and_pairs_are_typed() {
        let mut t = NetStatsTracker::default();
        t.note_sdp_candidates(
            "a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\n",
            true,
        );
        t.note_sdp_candidates(
            "a=candidate:2 1 udp 1694498815 203.0.113.9 6000 typ srflx raddr 0.0.0.0 rport 0\r\n",
            false,
        );
        let t0 = Instant::now();
        let srflx: SocketAddr = "203.0.113.9:6000".parse().unwrap();
        // 10 kB/s in, 20 kB/s out for 5 s; the window keeps the last 4 reports (3 s).
        for i in 0..6u64 {
            t.on_peer(&report(
                t0 + Duration::from_secs(i),
                10_000 * i,
                20_000 * i,
                srflx,
            ));
        }
        let s = t.stats();
        assert_eq!(s.reports, 6);
        assert_eq!(s.bitrate_in_bps, 80_000);
        assert_eq!(s.bitrate_out_bps, 160_000);
        assert_eq!(s.bytes_out, 100_000);
        // The ICE check's RTT wins over RTCP's.
        assert_eq!(s.rtt_ms, Some(1.5));
        assert_eq!(s.loss_in, Some(0.25));
        let pair = s.selected_pair.clone().unwrap();
        assert_eq!(pair.local_type, CandidateType::Host);
        assert_eq!(pair.remote_type, CandidateType::Srflx);
        // An address no candidate announced: peer-reflexive.
        let learned: SocketAddr = "198.51.100.7:7000".parse().unwrap();
        t.on_peer(&report(
            t0 + Duration::from_secs(6),
            60_000,
            120_000,
            learned,
        ));
        let pair = t.stats().selected_pair.clone().unwrap();
        assert_eq!(pair.remote_type, CandidateType::Prflx);
        assert_eq!(pair.remote_address, learned);
    }
}
