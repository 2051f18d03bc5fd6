//! Audio: Opus decode/encode, resampling, the input frame ring and the output pacer.
//! Pure, sans-IO building blocks: no sockets, no threads, time passed in by the caller.

pub mod jitter;
pub mod opus;
pub mod pacer;
pub mod receiver;
pub mod resample;
pub mod ring;
pub mod sender;

pub use jitter::ReorderWait;
pub use opus::{OpusDecoder, OpusEncoder};
pub use pacer::{AudioPacer, Packet, WriteId};
pub use receiver::{AudioReceiver, ReceiverStats};
pub use resample::{opus_native_rate, Resampler};
pub use ring::{AudioFrame, FrameRing, PopError};
pub use sender::{AudioSender, EncodedPacket};
