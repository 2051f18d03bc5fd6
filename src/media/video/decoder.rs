//! The codec-agnostic video decoder: an encoded VP8 frame or H.264 access unit in, a packed
//! RGB24 [`VideoFrame`] out. Owns the codec and the YUV → RGB step; must not depacketize,
//! queue frames or touch sockets. A decode error means the caller should request a keyframe.

use super::convert::yuv_to_rgb;
use super::frame::{VideoCodec, VideoFrame, YuvImage};
use super::h264::H264Decoder;
use super::vp8::Vp8Decoder;
use crate::error::Result;

enum Codec {
    Vp8(Vp8Decoder),
    H264(H264Decoder),
}

/// Decodes one incoming video track.
pub struct VideoDecoder {
    codec: Codec,
}

impl VideoDecoder {
    /// A decoder for `codec`.
    pub fn new(codec: VideoCodec) -> Result<Self> {
        let codec = match codec {
            VideoCodec::Vp8 => Codec::Vp8(Vp8Decoder::new()?),
            VideoCodec::H264 => Codec::H264(H264Decoder::new()?),
        };
        Ok(VideoDecoder { codec })
    }

    /// The codec decoded.
    pub fn codec(&self) -> VideoCodec {
        match self.codec {
            Codec::Vp8(_) => VideoCodec::Vp8,
            Codec::H264(_) => VideoCodec::H264,
        }
    }

    /// Decodes `data` without colour conversion; the picture borrows the decoder.
    pub fn decode_yuv(&mut self, data: &[u8]) -> Result<Option<YuvImage<'_>>> {
        match &mut self.codec {
            Codec::Vp8(d) => d.decode(data),
            Codec::H264(d) => d.decode(data),
        }
    }

    /// Decodes `data` and converts the picture into `out` (its buffer reused), stamping it
    /// with `pts`; `out.source` is left as is. Returns false when the data completed no
    /// picture (`out` untouched). On error `out` may hold a partial frame and must not be
    /// shown; the caller should request a keyframe.
    pub fn decode(&mut self, data: &[u8], pts: u64, out: &mut VideoFrame) -> Result<bool> {
        let Some(image) = self.decode_yuv(data)? else {
            return Ok(false);
        };
        out.width = image.width();
        out.height = image.height();
        out.pts = pts;
        yuv_to_rgb(&image, &mut out.rgb)?;
        Ok(true)
    }
}
