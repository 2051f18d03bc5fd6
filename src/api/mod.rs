//! The Rust handles the app holds. Each method is a thin command to the runtime.

mod peer;

pub use peer::Peer;
