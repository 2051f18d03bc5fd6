//! The data-channel protocol.
