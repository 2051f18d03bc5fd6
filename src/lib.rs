//! smallwebrtc: the server-side WebRTC peer of a voice or vision bot, with a C ABI.
//!
//! A drop-in server for Pipecat's SmallWebRTC clients. Peers run sans-IO str0m sessions on
//! I/O threads driven by mio; codec work runs on a worker pool; the app talks to a peer
//! through [`Peer`] (Rust) or the `swrtc_*` functions (C, see `include/smallwebrtc.h`).
#![warn(missing_docs)]

mod api;
mod config;
mod error;
// The C ABI: documented in `include/smallwebrtc.h`, not here; public for the Rust tests
// that drive it.
#[doc(hidden)]
pub mod ffi;
#[doc(hidden)]
pub mod fuzz;
mod ice;
mod io;
mod limits;
// The codecs and frame types: public for the test peers and benches; the app needs only
// the frame types re-exported below.
#[doc(hidden)]
pub mod media;
mod messages;
pub mod rtvi;
mod runtime;
mod session;
#[cfg(feature = "signalling")]
pub mod signalling;

pub use api::{Peer, PeerReport};
pub use config::{IceServer, PeerConfig, RuntimeConfig};
pub use error::{Error, ErrorKind, Result};
pub use media::audio::AudioFrame;
pub use media::video::{VideoFrame, VideoSource};
pub use runtime::{
    AudioStats, FrameCallback, PeerEvent, PeerHandler, Runtime, RuntimeStats, VideoStats,
};
pub use session::{
    CandidatePair, CandidateType, NetworkStats, PeerState, SessionStats, TransportProtocol,
};
