//! The Rust handles the app holds. Each method is a thin command to the runtime.

mod peer;
mod stats;

pub use peer::Peer;
pub use stats::PeerReport;
