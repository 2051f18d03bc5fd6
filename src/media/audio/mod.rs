//! Audio: Opus decode/encode, resampling, the input frame ring and the output pacer.
//! Pure, sans-IO building blocks: no sockets, no threads, time passed in by the caller.

pub mod opus;
pub mod receiver;
pub mod resample;
pub mod ring;

pub use opus::{OpusDecoder, OpusEncoder};
pub use receiver::{AudioReceiver, ReceiverStats};
pub use resample::{opus_native_rate, Resampler};
pub use ring::{AudioFrame, FrameRing, PopError};
