//! The codec-agnostic video encoder: app RGB24 frames of the configured size in, VP8 or
//! H.264 frames out, with keyframes on demand. Owns the RGB → I420 step and its buffer;
//! must not packetize, pace or touch sockets.

use super::convert::{rgb_to_i420, MAX_DIMENSION};
use super::frame::{I420Buffer, RgbImage, VideoCodec};
use super::h264::H264Encoder;
use super::vp8::Vp8Encoder;
use crate::error::{Error, Result};

/// Default target bitrate (bit/s), the transport's default video out bitrate.
pub const DEFAULT_BITRATE: u32 = 1_000_000;
/// Default frame rate.
pub const DEFAULT_FRAMERATE: u32 = 30;
/// Default keyframe interval in frames (WebRTC's): keyframes otherwise come on PLI/FIR.
pub const DEFAULT_KEYFRAME_INTERVAL: u32 = 3000;

/// What to encode and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoEncoderConfig {
    /// The negotiated codec.
    pub codec: VideoCodec,
    /// Width in pixels; even (4:2:0 chroma and H.264 need whole pixel pairs).
    pub width: u32,
    /// Height in pixels; even.
    pub height: u32,
    /// Frames per second the app writes.
    pub framerate: u32,
    /// Target bitrate in bit/s.
    pub bitrate: u32,
    /// A keyframe at least every this many frames; 0 for keyframes only on request.
    pub keyframe_interval: u32,
}

impl VideoEncoderConfig {
    /// A config with the default frame rate, bitrate and keyframe interval.
    pub fn new(codec: VideoCodec, width: u32, height: u32) -> Self {
        VideoEncoderConfig {
            codec,
            width,
            height,
            framerate: DEFAULT_FRAMERATE,
            bitrate: DEFAULT_BITRATE,
            keyframe_interval: DEFAULT_KEYFRAME_INTERVAL,
        }
    }

    /// Checks the settings; errors are [`crate::ErrorKind::InvalidArgument`].
    pub fn validate(&self) -> Result<()> {
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 || w % 2 != 0 || h % 2 != 0 {
            return Err(Error::invalid(format!(
                "video out size {w}x{h} must be non-zero and even"
            )));
        }
        // OpenH264's limit, and more than any bot sends.
        if w.max(h) > 3840 || w.min(h) > 2160 || w.max(h) > MAX_DIMENSION {
            return Err(Error::invalid(format!(
                "video out size {w}x{h} exceeds 3840x2160"
            )));
        }
        if self.framerate == 0 || self.framerate > 120 {
            return Err(Error::invalid(format!(
                "video out frame rate {} must be 1..=120",
                self.framerate
            )));
        }
        check_bitrate(self.bitrate)
    }
}

fn check_bitrate(bitrate: u32) -> Result<()> {
    if !(10_000..=100_000_000).contains(&bitrate) {
        return Err(Error::invalid(format!(
            "video bitrate {bitrate} bit/s must be between 10 kbit/s and 100 Mbit/s"
        )));
    }
    Ok(())
}

/// One encoded frame: a VP8 frame or an H.264 Annex-B access unit. Reused between calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The bitstream, ready for str0m to packetize.
    pub data: Vec<u8>,
    /// Whether the frame can be decoded on its own (VP8 keyframe, H.264 IDR with SPS/PPS).
    pub keyframe: bool,
    /// Presentation time on the 90 kHz clock (made strictly increasing if the input was not).
    pub pts: u64,
}

enum Codec {
    Vp8(Vp8Encoder),
    // OpenH264's output descriptor makes this one large.
    H264(Box<H264Encoder>),
}

/// Encodes app RGB24 frames in the configured codec.
pub struct VideoEncoder {
    config: VideoEncoderConfig,
    codec: Codec,
    i420: I420Buffer,
}

impl VideoEncoder {
    /// An encoder for a validated `config`.
    pub fn new(config: VideoEncoderConfig) -> Result<Self> {
        config.validate()?;
        let codec = match config.codec {
            VideoCodec::Vp8 => Codec::Vp8(Vp8Encoder::new(&config)?),
            VideoCodec::H264 => Codec::H264(Box::new(H264Encoder::new(&config)?)),
        };
        let mut i420 = I420Buffer::new();
        i420.resize(config.width, config.height);
        Ok(VideoEncoder {
            config,
            codec,
            i420,
        })
    }

    /// The settings in use (bitrate as last set).
    pub fn config(&self) -> &VideoEncoderConfig {
        &self.config
    }

    /// Makes the next frame a keyframe (on PLI or FIR from the client).
    pub fn force_keyframe(&mut self) {
        match &mut self.codec {
            Codec::Vp8(e) => e.force_keyframe(),
            Codec::H264(e) => e.force_keyframe(),
        }
    }

    /// Changes the target bitrate (bit/s) from the next frame on.
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<()> {
        check_bitrate(bitrate)?;
        match &mut self.codec {
            Codec::Vp8(e) => e.set_bitrate(bitrate)?,
            Codec::H264(e) => e.set_bitrate(bitrate)?,
        }
        self.config.bitrate = bitrate;
        Ok(())
    }

    /// Encodes `image` at `pts` (90 kHz) into `out`. Returns whether a frame was produced:
    /// VP8 skips frames when the bitrate is too low for the picture (never a keyframe).
    /// A size other than the configured one, a short buffer or a too-small stride is
    /// [`crate::ErrorKind::InvalidArgument`].
    pub fn encode(
        &mut self,
        image: &RgbImage<'_>,
        pts: u64,
        out: &mut EncodedFrame,
    ) -> Result<bool> {
        let (w, h) = (self.config.width, self.config.height);
        if image.width != w || image.height != h {
            return Err(Error::invalid(format!(
                "video out is configured for {w}x{h}, got a {}x{} frame",
                image.width, image.height
            )));
        }
        rgb_to_i420(image.data, w, h, image.stride, &mut self.i420)?;
        let planes = self.i420.planes();
        match &mut self.codec {
            Codec::Vp8(e) => e.encode(&planes, pts, out),
            Codec::H264(e) => e.encode(&planes, pts, out),
        }
    }
}
