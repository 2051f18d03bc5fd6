//! One serialisable report of everything a peer counts and measures, for operators
//! (`Peer::report`, `Peer::stats_json`, the C `swrtc_peer_get_stats_json` and the
//! signalling server's `/api/stats` route).

use serde::Serialize;

use crate::runtime::{AudioStats, VideoStats};
use crate::session::{NetworkStats, PeerState, SessionStats};

/// Everything about one peer at one moment. Serialises to the JSON documented in the
/// README ("Logs and stats").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerReport {
    /// The state as the app sees it, lowercase ("connected", ...).
    pub state: &'static str,
    /// RTT, jitter, loss, bitrate, bytes, packets and the selected candidate pair.
    pub network: NetworkStats,
    /// Datagram and message counters.
    pub session: SessionStats,
    /// The audio path's counters.
    pub audio: AudioStats,
    /// The video path's counters.
    pub video: VideoStats,
    /// Events dropped because the app did not keep up.
    pub events_dropped: u64,
}

/// The lowercase name of a state, as in the report.
pub(crate) fn state_name(s: PeerState) -> &'static str {
    match s {
        PeerState::New => "new",
        PeerState::Connecting => "connecting",
        PeerState::Connected => "connected",
        PeerState::Disconnected => "disconnected",
        PeerState::Failed => "failed",
        PeerState::Closed => "closed",
    }
}
