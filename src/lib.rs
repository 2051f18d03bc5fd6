//! smallwebrtc: the server-side WebRTC peer of a voice or vision bot, with a C ABI.
//!
//! A drop-in server for Pipecat's SmallWebRTC clients. Peers run sans-IO str0m sessions on
//! I/O threads driven by mio; codec work runs on a worker pool; the app talks to a peer
//! through [`Peer`] (Rust) or the `swrtc_*` functions (C, see `include/smallwebrtc.h`).
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod error;
pub mod ffi;
#[doc(hidden)]
pub mod fuzz;
pub mod ice;
pub mod io;
pub mod limits;
pub mod media;
pub mod messages;
pub mod rtvi;
pub mod runtime;
pub mod session;
#[cfg(feature = "signalling")]
pub mod signalling;

pub use api::{Peer, PeerReport};
pub use config::{IceServer, PeerConfig, RuntimeConfig};
pub use error::{Error, ErrorKind, Result};
pub use media::video::{VideoFrame, VideoSource};
pub use runtime::{
    AudioStats, FrameCallback, PeerEvent, PeerHandler, Runtime, RuntimeStats, VideoStats,
};
pub use session::{CandidatePair, CandidateType, NetworkStats, PeerState, TransportProtocol};
