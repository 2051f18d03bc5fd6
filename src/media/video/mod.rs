//! Video: VP8 (libvpx) and H.264 (OpenH264) decoding and encoding, YUV ↔ RGB24 conversion
//! and the latest-frame slot that hands decoded frames to the app.
//! Pure, sans-IO building blocks: no sockets, no threads, no clocks; the runtime's workers
//! call them and pass RTP timestamps in.

pub mod convert;
pub mod decoder;
pub mod encoder;
pub mod frame;
pub mod h264;
pub mod pattern;
pub mod slot;
pub mod vp8;

#[cfg(test)]
mod tests;

pub use decoder::VideoDecoder;
pub use encoder::{EncodedFrame, VideoEncoder, VideoEncoderConfig};
pub use frame::{
    GreyPlane, I420Buffer, I420Planes, Nv12Planes, RgbImage, VideoCodec, VideoFrame, VideoSource,
    YuvImage,
};
pub use slot::{LatestFrame, TakeError};
